package shm

import "errors"

// Errors returned by Open when the file is not a region this build can use.
// They are wrapped with the file's path; match them with errors.Is.
var (
	// ErrBadMagic means the file does not start with the region's magic.
	ErrBadMagic = errors.New("shm: not an atomicflow shared region (bad magic)")
	// ErrVersion means the region was laid out by an incompatible build.
	ErrVersion = errors.New("shm: layout version mismatch")
	// ErrSize means the header's size, the slot count and the file size disagree.
	ErrSize = errors.New("shm: region size mismatch")
	// ErrSlot means the requested slot is outside the region.
	ErrSlot = errors.New("shm: slot out of range")
	// ErrMaster means the region belongs to another master process.
	ErrMaster = errors.New("shm: region belongs to another master")
)
