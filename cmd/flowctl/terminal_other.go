//go:build !linux

package main

import "io"

// isTerminal reports false: flowctl draws no progress bar and does not clear
// the screen outside Linux.
func isTerminal(io.Writer) bool { return false }
