package providers

import "strings"

// ShellQuote quotes s as one word for a POSIX shell, whatever it holds.
func ShellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// LabelsMatch reports whether have carries every label in want (nil or
// empty want matches everything), the rule List follows on every driver.
func LabelsMatch(have, want map[string]string) bool {
	for k, v := range want {
		if got, ok := have[k]; !ok || got != v {
			return false
		}
	}
	return true
}
