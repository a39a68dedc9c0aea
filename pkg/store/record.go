package store

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	pb "github.com/atomicflow/atomicflow/proto/atomicflow/v1"
)

// MarshalRecord encodes r as a TaskRecord (proto/atomicflow/v1/store.proto),
// the value stored under r.ID in the bolt file. It fails only for a nil
// record or an unknown state (errors wrapping ErrInvalid).
//
// The encoding is written by hand with protowire, byte for byte what
// proto.MarshalOptions{Deterministic: true} makes of the TaskRecord (fields
// in number order, zero values left out; TestMarshalRecordMatchesProto
// checks it): it runs for every Create and Update, and the generic
// marshaller with its intermediate message and string copies cost several
// times as much, in CPU and garbage.
func MarshalRecord(r *Record) ([]byte, error) {
	if r == nil {
		return nil, fmt.Errorf("%w: nil record", ErrInvalid)
	}
	st := r.State.index()
	if st < 0 {
		return nil, fmt.Errorf("%w: task %q: unknown state %q", ErrInvalid, r.ID, r.State)
	}
	created, started, finished := unixNano(r.CreatedAt), unixNano(r.StartedAt), unixNano(r.FinishedAt)
	size := sizeBytesField(len(r.ID)) + sizeBytesField(len(r.Kind)) + sizeBytesField(len(r.Payload)) +
		sizeBytesField(len(r.Key)) + sizeVarintField(uint64(r.TimeoutMs)) +
		sizeVarintField(uint64(int64(r.MaxAttempts))) + sizeBytesField(len(r.IdempotencyKey)) +
		sizeVarintField(uint64(st+1)) + sizeVarintField(uint64(int64(r.Attempts))) +
		sizeVarintField(protowire.EncodeZigZag(int64(r.WorkerSlot))) + sizeBytesField(len(r.Result)) +
		sizeBytesField(len(r.Error)) + sizeFixed64Field(created) + sizeFixed64Field(started) +
		sizeFixed64Field(finished)
	b := make([]byte, 0, size)
	b = appendStringField(b, 1, r.ID)
	b = appendStringField(b, 2, r.Kind)
	b = appendBytesField(b, 3, r.Payload)
	b = appendStringField(b, 4, r.Key)
	b = appendVarintField(b, 5, uint64(r.TimeoutMs))
	b = appendVarintField(b, 6, uint64(int64(r.MaxAttempts))) // int32: sign-extended
	b = appendStringField(b, 7, r.IdempotencyKey)
	b = appendVarintField(b, 8, uint64(st+1))
	b = appendVarintField(b, 9, uint64(int64(r.Attempts)))
	b = appendVarintField(b, 10, protowire.EncodeZigZag(int64(r.WorkerSlot))) // sint32
	b = appendBytesField(b, 11, r.Result)
	b = appendStringField(b, 12, r.Error)
	b = appendFixed64Field(b, 13, created)
	b = appendFixed64Field(b, 14, started)
	b = appendFixed64Field(b, 15, finished)
	return b, nil
}

// The field helpers below leave out zero values, as proto3 does for fields
// without presence. Every field number of TaskRecord is below 16, so each
// tag is one byte.

func sizeBytesField(n int) int {
	if n == 0 {
		return 0
	}
	return 1 + protowire.SizeVarint(uint64(n)) + n
}

func sizeVarintField(v uint64) int {
	if v == 0 {
		return 0
	}
	return 1 + protowire.SizeVarint(v)
}

func sizeFixed64Field(v int64) int {
	if v == 0 {
		return 0
	}
	return 1 + 8
}

func appendStringField(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendBytesField(b []byte, num protowire.Number, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendFixed64Field(b []byte, num protowire.Number, v int64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.Fixed64Type)
	return protowire.AppendFixed64(b, uint64(v))
}

// UnmarshalRecord decodes a TaskRecord made by MarshalRecord. Input that is
// not a valid TaskRecord (bad wire format, unknown state) gives an error
// wrapping ErrCorrupt; it never panics. The result shares no memory with b.
func UnmarshalRecord(b []byte) (*Record, error) {
	var m pb.TaskRecord
	if err := proto.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: decode record: %w", ErrCorrupt, err)
	}
	st, err := stateOf(int64(m.GetState()))
	if err != nil {
		return nil, fmt.Errorf("%w: record %q: %w", ErrCorrupt, m.GetId(), err)
	}
	return &Record{
		ID:             string(m.GetId()),
		Kind:           string(m.GetKind()),
		Payload:        m.GetPayload(),
		Key:            string(m.GetKey()),
		TimeoutMs:      m.GetTimeoutMs(),
		MaxAttempts:    m.GetMaxAttempts(),
		IdempotencyKey: string(m.GetIdempotencyKey()),
		State:          st,
		Attempts:       m.GetAttempts(),
		WorkerSlot:     m.GetWorkerSlot(),
		Result:         m.GetResult(),
		Error:          string(m.GetError()),
		CreatedAt:      fromUnixNano(m.GetCreatedAtUnixNano()),
		StartedAt:      fromUnixNano(m.GetStartedAtUnixNano()),
		FinishedAt:     fromUnixNano(m.GetFinishedAtUnixNano()),
	}, nil
}

// stateOf maps a TaskRecord.State number to a State.
func stateOf(n int64) (State, error) {
	if n < 1 || n > numStates {
		return "", fmt.Errorf("state number %d out of range", n)
	}
	return allStates()[n-1], nil
}

// unixNano is t in Unix nanoseconds, 0 for the zero time.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// fromUnixNano is the inverse of unixNano.
func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// Field numbers of TaskRecord that recordMeta reads without decoding the
// whole record (see store.proto; they never change).
const (
	fieldID             protowire.Number = 1
	fieldIdempotencyKey protowire.Number = 7
	fieldState          protowire.Number = 8
	fieldFinishedAt     protowire.Number = 15
)

// recordMeta is what the indexes need to know about a stored record.
type recordMeta struct {
	id         []byte // aliases the encoded record
	idemKey    []byte // aliases the encoded record
	state      State
	finishedAt int64 // Unix nanos, 0 for none
}

// peekRecord reads the indexed fields of an encoded TaskRecord without
// allocating, checking the wire format of every field on the way.
func peekRecord(b []byte) (recordMeta, error) {
	var (
		m     recordMeta
		state int64
	)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return m, fmt.Errorf("%w: record: %w", ErrCorrupt, protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == fieldID && typ == protowire.BytesType:
			m.id, n = protowire.ConsumeBytes(b)
		case num == fieldIdempotencyKey && typ == protowire.BytesType:
			m.idemKey, n = protowire.ConsumeBytes(b)
		case num == fieldState && typ == protowire.VarintType:
			var v uint64
			v, n = protowire.ConsumeVarint(b)
			state = int64(int32(v)) // an enum is an int32
		case num == fieldFinishedAt && typ == protowire.Fixed64Type:
			var v uint64
			v, n = protowire.ConsumeFixed64(b)
			m.finishedAt = int64(v)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return m, fmt.Errorf("%w: record %q: field %d: %w", ErrCorrupt, m.id, num, protowire.ParseError(n))
		}
		b = b[n:]
	}
	st, err := stateOf(state)
	if err != nil {
		return m, fmt.Errorf("%w: record %q: %w", ErrCorrupt, m.id, err)
	}
	m.state = st
	return m, nil
}
