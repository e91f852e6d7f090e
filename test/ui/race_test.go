//go:build race

package ui_test

// raceBuild: the test binary was built with -race, and so is the server it
// starts (the race-built packages are then already in the build cache).
const raceBuild = true
