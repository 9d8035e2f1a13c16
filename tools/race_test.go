//go:build race

package tools_test

// raceEnabled: the race detector slows byte-crunching ~15x; tests that move
// tens of megabytes shrink under it (it checks concurrency, not volume).
const raceEnabled = true
