package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/atomicflow/atomicflow/pkg/engine"
)

// TaskRequest is the JSON body of one task.
type TaskRequest struct {
	Kind           string          `json:"kind"`
	Payload        json.RawMessage `json:"payload"`
	Key            string          `json:"key"`
	TimeoutMs      int64           `json:"timeout_ms"`
	MaxAttempts    int             `json:"max_attempts"`
	IdempotencyKey string          `json:"idempotency_key"`
}

// BatchRequest is the JSON body of a batch submit.
type BatchRequest struct {
	Tasks []TaskRequest `json:"tasks"`
}

// DecodeError is a request body the API refuses.
type DecodeError struct {
	Code    string // bad_json or bad_field
	Message string
}

func (e *DecodeError) Error() string { return e.Message }

func decodeStrict(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe interface{ MaxBytesLimit() int64 }
		if errors.As(err, &mbe) {
			return err
		}
		var tooLarge *maxBytesErr
		if errors.As(err, &tooLarge) {
			return err
		}
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) {
			return &DecodeError{Code: "bad_field", Message: fmt.Sprintf("field %q: expected %s, got JSON %s", ute.Field, ute.Type, ute.Value)}
		}
		if isMaxBytes(err) {
			return err
		}
		msg := err.Error()
		if bytes.HasPrefix([]byte(msg), []byte("json: unknown field")) {
			return &DecodeError{Code: "bad_field", Message: msg[len("json: "):]}
		}
		return &DecodeError{Code: "bad_json", Message: "malformed JSON: " + msg}
	}
	if dec.More() {
		return &DecodeError{Code: "bad_json", Message: "malformed JSON: more than one value in the body"}
	}
	if _, err := dec.Token(); err != io.EOF {
		if isMaxBytes(err) {
			return err
		}
		return &DecodeError{Code: "bad_json", Message: "malformed JSON: trailing data after the value"}
	}
	return nil
}

// DecodeTask reads one task from a request body.
func DecodeTask(r io.Reader) (engine.Submission, error) {
	var tr TaskRequest
	if err := decodeStrict(r, &tr); err != nil {
		return engine.Submission{}, err
	}
	return tr.submission(0)
}

// DecodeBatch reads a batch of tasks; max bounds its size.
func DecodeBatch(r io.Reader, maxTasks int) ([]engine.Submission, error) {
	var br BatchRequest
	if err := decodeStrict(r, &br); err != nil {
		return nil, err
	}
	if len(br.Tasks) == 0 {
		return nil, &DecodeError{Code: "bad_field", Message: "tasks: at least one task is required"}
	}
	if len(br.Tasks) > maxTasks {
		return nil, &DecodeError{Code: "bad_field", Message: fmt.Sprintf("tasks: %d tasks in one batch, the limit is %d", len(br.Tasks), maxTasks)}
	}
	out := make([]engine.Submission, len(br.Tasks))
	for i := range br.Tasks {
		s, err := br.Tasks[i].submission(i)
		if err != nil {
			return nil, err
		}
		out[i] = s
	}
	return out, nil
}

func (tr *TaskRequest) submission(i int) (engine.Submission, error) {
	bad := func(format string, a ...any) (engine.Submission, error) {
		return engine.Submission{}, &DecodeError{Code: "bad_field", Message: fmt.Sprintf("tasks[%d]: ", i) + fmt.Sprintf(format, a...)}
	}
	switch {
	case tr.Kind == "":
		return bad("kind is required")
	case tr.TimeoutMs < 0:
		return bad("timeout_ms must be >= 0, got %d", tr.TimeoutMs)
	case tr.MaxAttempts < 0 || tr.MaxAttempts > 1000:
		return bad("max_attempts must be between 0 (default) and 1000, got %d", tr.MaxAttempts)
	}
	payload := []byte(tr.Payload)
	if bytes.Equal(bytes.TrimSpace(payload), []byte("null")) {
		payload = nil
	}
	return engine.Submission{
		Kind: tr.Kind, Payload: payload, Key: tr.Key, TimeoutMs: tr.TimeoutMs,
		MaxAttempts: tr.MaxAttempts, IdempotencyKey: tr.IdempotencyKey,
	}, nil
}
