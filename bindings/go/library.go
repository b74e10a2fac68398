package alibi

import "alibi.dev/go/alibi/internal/capi"

// Version is the version of the library actually linked, e.g. "0.1.0".
func Version() string { return capi.Alibi_version_string() }

// Slopes computes slope[h] for heads 0..numHeads-1 (maxBias 8 gives the paper's slopes).
func Slopes(numHeads int, maxBias float32) ([]float32, error) {
	var slopes []float32
	if numHeads > 0 {
		slopes = make([]float32, numHeads)
	}
	err := capi.Alibi_compute_slopes(numHeads, maxBias, slopes)
	return slopes, fromC(err)
}
