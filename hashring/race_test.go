//go:build race

package hashring_test

// raceEnabled trims the statistical tests under the race detector, which
// slows single-goroutine lookups tenfold without checking anything more.
const raceEnabled = true
