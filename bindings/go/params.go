package alibi

import "alibi.dev/go/alibi/internal/capi"

// AttentionParams are the parameters of a forward call, copied into each call.
// NewAttentionParams gives the library's defaults; a nil *AttentionParams means the same.
type AttentionParams struct {
	SoftmaxScale   float32   // <= 0: 1/sqrt(head dim)
	Softcap        float32   // 0: off; > 0: s = softcap * tanh(s / softcap)
	MaxBias        float32   // the slope formula's parameter; 0 without Slopes: no ALiBi
	Slopes         []float32 // replace the formula: Hq slopes, or batch * Hq with SlopesPerBatch
	SlopesPerBatch bool
	TotalHeads     int // tensor parallelism: heads [HeadOffset, HeadOffset + Hq) of TotalHeads
	HeadOffset     int
	AttnBias       *Tensor // additive (H or 1, totalQ, totalK); must stay open while used
	Deterministic  bool
}

// NewAttentionParams returns the defaults: scale 1/sqrt(D), no softcap, MaxBias 8, the formula.
func NewAttentionParams() *AttentionParams {
	p := capi.NewAlibi_attention_params()
	defer capi.DeleteAlibi_attention_params(p)
	return &AttentionParams{
		SoftmaxScale:   p.GetSoftmaxScale(),
		Softcap:        p.GetSoftcap(),
		MaxBias:        p.GetMaxBias(),
		SlopesPerBatch: p.GetSlopesPerBatch() != 0,
		TotalHeads:     p.GetTotalHeads(),
		HeadOffset:     p.GetHeadOffset(),
		Deterministic:  p.GetDeterministic() != 0,
	}
}

// withNative runs the raw call body with a native copy of params (nil for nil: the library's
// defaults) and returns its error as this package's. params.AttnBias stays alive meanwhile.
func withNative(call string, params *AttentionParams, body func(capi.Alibi_attention_params) error) error {
	if params == nil {
		return fromC(body(nil))
	}
	a := handles{call: call}
	bias := a.optionalTensor(params.AttnBias, "params.AttnBias")
	if a.err != nil {
		return a.err
	}
	defer keepAlive(params.AttnBias)
	p := capi.NewAlibi_attention_params()
	defer capi.DeleteAlibi_attention_params(p)
	p.SetSoftmaxScale(params.SoftmaxScale)
	p.SetSoftcap(params.Softcap)
	p.SetMaxBias(params.MaxBias)
	p.SetSlopesPerBatch(boolInt(params.SlopesPerBatch))
	p.SetTotalHeads(params.TotalHeads)
	p.SetHeadOffset(params.HeadOffset)
	p.SetAttnBias(bias)
	p.SetDeterministic(boolInt(params.Deterministic))
	if params.Slopes != nil {
		if err := p.SetSlopes(params.Slopes, len(params.Slopes)); err != nil {
			return fromC(err)
		}
	}
	return fromC(body(p))
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
