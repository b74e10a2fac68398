package alibi

import (
	"errors"
	"go/ast"
	"go/doc"
	"go/parser"
	"go/token"
	"io/fs"
	"strings"
	"testing"
)

// filled is n copies of a sentinel, to see that a failed call wrote nothing.
func filled(n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = -7
	}
	return x
}

func assertUntouched(t *testing.T, what string, x []float32) {
	t.Helper()
	for i, f := range x {
		if f != -7 {
			t.Fatalf("%s[%d] = %g after a failed call", what, i, f)
		}
	}
}

// assertClosed asserts an error that errors.Is finds ErrClosed in, with this message.
func assertClosed(t *testing.T, message string, err error) {
	t.Helper()
	assertFails(t, StatusNullPointer, message, err)
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("errors.Is(%v, ErrClosed) is false", err)
	}
}

func TestAClosedObjectGivesErrClosedNamingIt(t *testing.T) {
	tq, tk := int(cuQ[3]), int(cuK[3])
	q, kv, out := make([]float32, tq*hq*dim), make([]float32, tk*hkv*dim), filled(tq*hq*dim)
	heads := Heads{hq, hkv, dim}
	ctx, mask := cpuVarlenMask(t)
	closedMask, err := NewVarlenMask(ctx, cuQ, cuK, true)
	must(t, err)
	closedMask.Close()
	assertClosed(t, "Context.ForwardFloat32: mask (Mask) is closed",
		ctx.ForwardFloat32(q, kv, kv, heads, closedMask, nil, out, nil))
	closedBias := f32Tensor(t, ctx, nil, 1, int64(tq), int64(tk))
	closedBias.Close()
	assertClosed(t, "Context.ForwardFloat32: params.AttnBias (Tensor) is closed",
		ctx.ForwardFloat32(q, kv, kv, heads, mask, &AttentionParams{AttnBias: closedBias}, out, nil))
	assertClosed(t, "Tensor.CopyToFloat32: Tensor is closed", closedBias.CopyToFloat32(out))
	assertUntouched(t, "out", out)

	closedContext, err := NewCPUContext()
	must(t, err)
	closedContext.Close()
	assertClosed(t, "Context.ForwardFloat32: Context is closed",
		closedContext.ForwardFloat32(q, kv, kv, heads, mask, nil, out, nil))
	assertClosed(t, "Context.SetNumThreads: Context is closed", closedContext.SetNumThreads(1))
	_, err = NewTensor(closedContext, F32, 1)
	assertClosed(t, "NewTensor: ctx (Context) is closed", err)
	_, err = NewVarlenMask(closedContext, cuQ, cuK, true)
	assertClosed(t, "NewVarlenMask: ctx (Context) is closed", err)
	assertUntouched(t, "out", out)
}

func TestANilArgumentGivesAnErrorNamingIt(t *testing.T) {
	tq, tk := int(cuQ[3]), int(cuK[3])
	q, kv, out := make([]float32, tq*hq*dim), make([]float32, tk*hkv*dim), filled(tq*hq*dim)
	heads := Heads{hq, hkv, dim}
	ctx, mask := cpuVarlenMask(t)
	var nilContext *Context
	assertFails(t, StatusNullPointer, "Context.ForwardFloat32: Context is nil",
		nilContext.ForwardFloat32(q, kv, kv, heads, mask, nil, out, nil))
	assertFails(t, StatusNullPointer, "Context.ForwardFloat32: mask (Mask) is nil",
		ctx.ForwardFloat32(q, kv, kv, heads, nil, nil, out, nil))
	assertFails(t, StatusNullPointer, "Context.ForwardFloat32: q is nil",
		ctx.ForwardFloat32(nil, kv, kv, heads, mask, nil, out, nil))
	assertFails(t, StatusNullPointer, "Context.ForwardFloat32: v is nil",
		ctx.ForwardFloat32(q, kv, nil, heads, mask, nil, out, nil))
	assertUntouched(t, "out", out)
	_, err := NewVarlenMask(nil, cuQ, cuK, true)
	assertFails(t, StatusNullPointer, "NewVarlenMask: ctx (Context) is nil", err)
	_, err = NewTensor(nil, F32, 1)
	assertFails(t, StatusNullPointer, "NewTensor: ctx (Context) is nil", err)
	x := f32Tensor(t, ctx, nil, 2)
	assertFails(t, StatusNullPointer, "Tensor.CopyFromFloat32: src is nil", x.CopyFromFloat32(nil))
	var nilMask *Mask
	assertFails(t, StatusNullPointer, "Mask.SetPositions: Mask is nil", nilMask.SetPositions([]int32{0}, nil))
	if errors.Is(err, ErrClosed) {
		t.Fatalf("a nil argument's error %v is ErrClosed", err)
	}
}

// The package's API is what godoc shows: a package comment, a comment on every exported name,
// and none of SWIG's raw names (internal/capi holds them).
func TestTheSurfaceIsDocumentedAndHasNoRawNames(t *testing.T) {
	fset := token.NewFileSet()
	notTest := func(f fs.FileInfo) bool { return !strings.HasSuffix(f.Name(), "_test.go") }
	packages, err := parser.ParseDir(fset, ".", notTest, parser.ParseComments)
	must(t, err)
	p := doc.New(packages["alibi"], "alibi.dev/go/alibi", 0)
	if !strings.HasPrefix(p.Doc, "Package alibi ") {
		t.Errorf("package comment %q", p.Doc)
	}
	var undocumented []string
	check := func(name, comment string) {
		if strings.HasPrefix(name, "Alibi_") || strings.HasPrefix(name, "Swig") {
			t.Errorf("raw SWIG name %s in the package", name)
		}
		if ast.IsExported(name) && strings.TrimSpace(comment) == "" {
			undocumented = append(undocumented, name)
		}
	}
	checkValues := func(values []*doc.Value) {
		for _, v := range values {
			check(v.Names[0], v.Doc)
		}
	}
	checkValues(p.Consts)
	checkValues(p.Vars)
	for _, f := range p.Funcs {
		check(f.Name, f.Doc)
	}
	for _, typ := range p.Types {
		check(typ.Name, typ.Doc)
		checkValues(typ.Consts)
		checkValues(typ.Vars)
		for _, f := range append(typ.Funcs, typ.Methods...) {
			check(typ.Name+"."+f.Name, f.Doc)
		}
	}
	if len(undocumented) > 0 {
		t.Errorf("undocumented: %v", undocumented)
	}
}
