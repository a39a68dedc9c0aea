package shm

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	// Magic is the first word of every region ("ATOMFLOW" little-endian).
	Magic uint64 = 0x574f4c464d4f5441
	// Version is the layout version; bump it whenever the layout changes.
	// 2: the table directory offset in the header and the tables after the
	// slots.
	Version uint32 = 2
	// LineSize is the alignment of every part of the region.
	LineSize = 128
	// SlotSize is the size of one worker slot: identity, then two worker
	// halves (counters, heartbeat) so a reload can run the new process beside
	// the draining old one.
	SlotSize = 5 * LineSize
	// MaxSlots bounds the slot count a region can be made with.
	MaxSlots = 4096
)

// header field offsets within line 0.
const (
	offMagic    = 0
	offVersion  = 8 // uint32 version, uint32 slots
	offSize     = 16
	offMaster   = 24
	offCreated  = 32
	offCounters = 40
	offTableDir = 48 // int64: where the table directory starts, 0 for none
)

// Header is the region's first line, as read by Open.
type Header struct {
	Magic     uint64
	Version   uint32
	Slots     int
	Size      int64
	MasterPID int
	Created   time.Time
	Counters  int
}

// Region is one mapping of the shared file. Methods are safe for concurrent
// use within a process and, through sync/atomic, across processes.
type Region struct {
	mem      []byte
	path     string
	slots    int
	owner    bool
	readOnly bool
	writers  []sync.Mutex // per-slot identity writers (master side)
	tables   []*Table     // set once by Create or Open, then read only
	lockID   uint64       // this process's table lock token
}

// Size returns the size in bytes of a region with n slots.
func Size(n int) int {
	return LineSize*(1+int(numCounters)) + n*SlotSize
}

// Create makes a new region file at path with n slots, owned by the calling
// process (the master). It fails if the file exists: a stale region is
// removed by the caller and replaced, never reused. It is
// CreateWithTables(path, n, nil).
func Create(path string, n int) (*Region, error) {
	return CreateWithTables(path, n, nil)
}

// CreateWithTables is Create plus the shared tables declared by specs,
// laid out after the slots and described by a directory in the region, so
// that Open finds them with no other input. Invalid specs give an error
// wrapping ErrTableSpec.
func CreateWithTables(path string, n int, specs []TableSpec) (*Region, error) {
	if n < 1 || n > MaxSlots {
		return nil, fmt.Errorf("shm: create %s: slot count %d outside 1..%d", path, n, MaxSlots)
	}
	if err := checkSpecs(specs); err != nil {
		return nil, fmt.Errorf("shm: create %s: %w", path, err)
	}
	layouts, size := regionLayout(n, specs)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("shm: create: %w", err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		_ = os.Remove(path)
		return nil, fmt.Errorf("shm: create %s: size: %w", path, err)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		_ = os.Remove(path)
		return nil, fmt.Errorf("shm: create %s: mmap: %w", path, err)
	}
	r := &Region{mem: mem, path: path, slots: n, owner: true, writers: make([]sync.Mutex, n)}
	r.u32(offVersion).Store(Version)
	r.u32(offVersion + 4).Store(uint32(n))
	r.i64(offSize).Store(size)
	r.i64(offMaster).Store(int64(os.Getpid()))
	r.i64(offCreated).Store(time.Now().UnixNano())
	r.i64(offCounters).Store(int64(numCounters))
	if len(specs) > 0 {
		r.writeDir(n, specs, layouts)
	}
	r.attachTables(specs, layouts)
	// The magic goes last: a reader that sees it sees a complete header.
	r.u64(offMagic).Store(Magic)
	return r, nil
}

// OpenOptions says what Open checks beyond the header's own consistency.
type OpenOptions struct {
	// Slot, when >= 0, must be inside the region.
	Slot int
	// MasterPID, when non-zero, must be the pid recorded in the header.
	MasterPID int
	// ReadOnly maps the region without write access (flowctl top).
	ReadOnly bool
}

// Open maps an existing region and verifies its header.
func Open(path string, opt OpenOptions) (*Region, error) {
	flag, prot := os.O_RDWR, unix.PROT_READ|unix.PROT_WRITE
	if opt.ReadOnly {
		flag, prot = os.O_RDONLY, unix.PROT_READ
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, fmt.Errorf("shm: open: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("shm: open %s: %w", path, err)
	}
	if st.Size() < LineSize {
		return nil, fmt.Errorf("shm: open %s: file is %d bytes: %w", path, st.Size(), ErrSize)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), prot, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("shm: open %s: mmap: %w", path, err)
	}
	r := &Region{mem: mem, path: path, readOnly: opt.ReadOnly}
	specs, layouts, err := r.verify(st.Size(), opt)
	if err != nil {
		_ = unix.Munmap(mem)
		return nil, fmt.Errorf("shm: open %s: %w", path, err)
	}
	r.writers = make([]sync.Mutex, r.slots)
	r.attachTables(specs, layouts)
	return r, nil
}

func (r *Region) verify(fileSize int64, opt OpenOptions) ([]TableSpec, []layout, error) {
	if m := r.u64(offMagic).Load(); m != Magic {
		return nil, nil, fmt.Errorf("magic %#x: %w", m, ErrBadMagic)
	}
	if v := r.u32(offVersion).Load(); v != Version {
		return nil, nil, fmt.Errorf("region version %d, this build %d: %w", v, Version, ErrVersion)
	}
	n := int(r.u32(offVersion + 4).Load())
	if n < 1 || n > MaxSlots {
		return nil, nil, fmt.Errorf("slot count %d: %w", n, ErrSize)
	}
	if c := r.i64(offCounters).Load(); c != int64(numCounters) {
		return nil, nil, fmt.Errorf("region has %d counters, this build %d: %w", c, numCounters, ErrVersion)
	}
	// The tables (if any) follow the slots; their directory says how big
	// the region must be.
	specs, layouts, want, err := r.readDir(n)
	if err != nil {
		return nil, nil, err
	}
	size := r.i64(offSize).Load()
	if size != want || size != fileSize {
		return nil, nil, fmt.Errorf("header size %d, %d slots and %d tables need %d, file is %d: %w", size, n, len(specs), want, fileSize, ErrSize)
	}
	if opt.Slot >= n {
		return nil, nil, fmt.Errorf("slot %d of %d: %w", opt.Slot, n, ErrSlot)
	}
	if opt.MasterPID != 0 {
		if pid := int(r.i64(offMaster).Load()); pid != opt.MasterPID {
			return nil, nil, fmt.Errorf("region master pid %d, expected %d: %w", pid, opt.MasterPID, ErrMaster)
		}
	}
	r.slots = n
	return specs, layouts, nil
}

// Path returns the file the region maps.
func (r *Region) Path() string { return r.path }

// Slots returns the number of worker slots.
func (r *Region) Slots() int { return r.slots }

// Header returns the region's header.
func (r *Region) Header() Header {
	return Header{
		Magic:     r.u64(offMagic).Load(),
		Version:   r.u32(offVersion).Load(),
		Slots:     int(r.u32(offVersion + 4).Load()),
		Size:      r.i64(offSize).Load(),
		MasterPID: int(r.i64(offMaster).Load()),
		Created:   time.Unix(0, r.i64(offCreated).Load()),
		Counters:  int(r.i64(offCounters).Load()),
	}
}

// Close unmaps the region. The owner also removes the file.
func (r *Region) Close() error {
	if r.mem == nil {
		return nil
	}
	err := unix.Munmap(r.mem)
	r.mem = nil
	if r.owner {
		if rerr := os.Remove(r.path); rerr != nil && !os.IsNotExist(rerr) && err == nil {
			err = rerr
		}
	}
	if err != nil {
		return fmt.Errorf("shm: close %s: %w", r.path, err)
	}
	return nil
}

func (r *Region) ptr(off int) unsafe.Pointer { return unsafe.Pointer(&r.mem[off]) }

func (r *Region) u64(off int) *atomic.Uint64 { return (*atomic.Uint64)(r.ptr(off)) }
func (r *Region) i64(off int) *atomic.Int64  { return (*atomic.Int64)(r.ptr(off)) }
func (r *Region) u32(off int) *atomic.Uint32 { return (*atomic.Uint32)(r.ptr(off)) }
