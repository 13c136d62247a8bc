//go:build !unix

package main

import "time"

// processCPU is 0 where getrusage is missing: the rows then show 0 CPU.
func processCPU() time.Duration { return 0 }

// peakRSS is 0 where getrusage is missing.
func peakRSS() uint64 { return 0 }
