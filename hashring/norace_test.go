//go:build !race

package hashring_test

const raceEnabled = false
