package main

import (
	"math"
	"sort"
)

// summary of a sample.
type quant struct {
	Min, P50, P99, Max, Mean float64
	N                        int
}

// quantiles sorts a copy of xs and reads its quantiles (nearest rank).
func quantiles(xs []float64) quant {
	if len(xs) == 0 {
		return quant{Min: math.NaN(), P50: math.NaN(), P99: math.NaN(), Max: math.NaN(), Mean: math.NaN()}
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	sum := 0.0
	for _, x := range s {
		sum += x
	}
	return quant{Min: s[0], P50: rank(s, 0.50), P99: rank(s, 0.99), Max: s[len(s)-1], Mean: sum / float64(len(s)), N: len(s)}
}

// rank is the nearest-rank q-quantile of sorted s.
func rank(s []float64, q float64) float64 {
	if len(s) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// sorted returns a sorted copy of xs.
func sorted(xs []float64) []float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s
}
