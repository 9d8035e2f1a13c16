//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package local

// fionread is FIONREAD, _IOR('f', 127, int), the same on every BSD.
const fionread = 0x4004667f
