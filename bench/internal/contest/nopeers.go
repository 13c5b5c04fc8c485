//go:build nopeers

package contest

// peers is empty in nopeers builds.
var peers []Contestant
