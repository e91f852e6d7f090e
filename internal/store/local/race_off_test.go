//go:build !race

package local

// raceOn says the tests run with the race detector: sequential tests that
// it only slows do less.
const raceOn = false
