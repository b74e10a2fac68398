package alibi

import "alibi.dev/go/alibi/internal/capi"

// Status is the status of a failed call (Error.Status); its values are the C ABI's and never change.
type Status int

// The statuses of the C ABI.
const (
	StatusSuccess            Status = 0
	StatusInvalidArgument    Status = 1
	StatusNullPointer        Status = 2
	StatusShapeMismatch      Status = 3
	StatusDTypeMismatch      Status = 4
	StatusUnsupported        Status = 5
	StatusBackendUnavailable Status = 6
	StatusOutOfMemory        Status = 7
	StatusDeviceError        Status = 8
	StatusInternal           Status = 9
	StatusCommunicationError Status = 10
)

// DType is an element type; f16 and bf16 elements are 16-bit patterns (uint16).
type DType int

// The element types.
const (
	F32  DType = 0
	F16  DType = 1
	BF16 DType = 2
	I32  DType = 3
	I64  DType = 4
)

// Device is where a context runs; DeviceAuto picks CUDA when available, else the CPU.
type Device int

// The devices.
const (
	DeviceAuto Device = 0
	DeviceCPU  Device = 1
	DeviceCUDA Device = 2
)

// MaskType is the rule of a mask slice of Sq x Sk cells, local row r and column c.
type MaskType int

// The mask types.
const (
	MaskFull          MaskType = 0 // always visible
	MaskCausal        MaskType = 1 // c <= r + (Sk - Sq): bottom-right aligned
	MaskInverseCausal MaskType = 2 // c >= r: top-left aligned
	MaskBiCausal      MaskType = 3 // both
)

// String is the library's name of the status, e.g. "shape mismatch".
func (s Status) String() string { return capi.Alibi_status_string(int(s)) }
