package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

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
	body, rest := readBody(r)
	if rest == nil {
		if sub, ok := fastTask(body); ok {
			return sub, nil
		}
		rest = bytes.NewReader(body)
	}
	var tr TaskRequest
	if err := decodeStrict(rest, &tr); err != nil {
		return engine.Submission{}, err
	}
	return tr.submission(0)
}

// DecodeBatch reads a batch of tasks; max bounds its size.
func DecodeBatch(r io.Reader, maxTasks int) ([]engine.Submission, error) {
	body, rest := readBody(r)
	if rest == nil {
		if subs, ok := fastBatch(body, maxTasks); ok {
			return subs, nil
		}
		rest = bytes.NewReader(body)
	}
	return decodeBatch(rest, maxTasks)
}

// decodeBatch is DecodeBatch with encoding/json, which makes every error.
func decodeBatch(r io.Reader, maxTasks int) ([]engine.Submission, error) {
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

// The fast path. DecodeTask and DecodeBatch read the whole body and parse
// the common shape of a valid request by hand: exact field names, strings
// without escapes, small integers, and payloads checked by a strict JSON
// scanner. Anything else, every invalid request included, goes to
// encoding/json with the same bytes (and the same read error at their
// end), so that errors and edge cases (case-insensitive or repeated names,
// escapes, invalid UTF-8, nulls) come out exactly as before. The fast
// path only accepts input that encoding/json decodes to the same result.

// readBody reads r to its end. When reading fails, rest replays what was
// read followed by the same error, for encoding/json to meet where it
// would have.
func readBody(r io.Reader) (body []byte, rest io.Reader) {
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(r); err != nil {
		return nil, io.MultiReader(bytes.NewReader(buf.Bytes()), errReader{err})
	}
	return buf.Bytes(), nil
}

// errReader fails every read with err.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// maxFastDepth bounds payload nesting on the fast path; deeper payloads
// go to encoding/json (which has its own limit).
const maxFastDepth = 1000

// fastParser walks a request body. The methods return false for anything
// the fast path does not take.
type fastParser struct {
	b    []byte
	i    int
	kind string // the last kind seen, shared by the tasks that repeat it
}

// fastTask parses a body holding one task.
func fastTask(body []byte) (engine.Submission, bool) {
	p := fastParser{b: body}
	var t fastTaskReq
	p.ws()
	if !p.task(&t) || !p.end() {
		return engine.Submission{}, false
	}
	sub, ok := t.submission()
	if ok {
		sub.Payload = bytes.Clone(sub.Payload) // not the whole body
	}
	return sub, ok
}

// fastBatch parses a body {"tasks":[…]} of 1 to maxTasks valid tasks.
func fastBatch(body []byte, maxTasks int) ([]engine.Submission, bool) {
	if maxTasks < 1 {
		return nil, false
	}
	p := fastParser{b: body}
	p.ws()
	if !p.ch('{') || !p.name("tasks") || !p.colon() {
		return nil, false
	}
	p.ws()
	if !p.ch('[') {
		return nil, false
	}
	subs := make([]engine.Submission, 0, min(maxTasks, 1+len(body)/16))
	payloads := 0
	for {
		if len(subs) == maxTasks {
			return nil, false
		}
		var t fastTaskReq
		if !p.task(&t) {
			return nil, false
		}
		sub, ok := t.submission()
		if !ok {
			return nil, false
		}
		payloads += len(sub.Payload)
		subs = append(subs, sub)
		p.ws()
		if p.ch(']') {
			break
		}
		if !p.ch(',') {
			return nil, false
		}
	}
	p.ws()
	if !p.ch('}') || !p.end() {
		return nil, false
	}
	// One allocation for all payloads, each capped so that an append
	// cannot reach its neighbour; the body itself is not kept.
	buf := make([]byte, 0, payloads)
	for i := range subs {
		if pl := subs[i].Payload; pl != nil {
			start := len(buf)
			buf = append(buf, pl...)
			subs[i].Payload = buf[start:len(buf):len(buf)]
		}
	}
	return subs, true
}

// fastTaskReq is one task as the fast path read it; payload aliases the
// body.
type fastTaskReq struct {
	kind, key, idem string
	payload         []byte
	timeoutMs       int64
	maxAttempts     int64
}

// submission is the task if it passes TaskRequest.submission's checks.
func (t *fastTaskReq) submission() (engine.Submission, bool) {
	if t.kind == "" || t.maxAttempts > 1000 {
		return engine.Submission{}, false
	}
	payload := t.payload
	if string(payload) == "null" {
		payload = nil
	}
	return engine.Submission{
		Kind: t.kind, Payload: payload, Key: t.key, TimeoutMs: t.timeoutMs,
		MaxAttempts: int(t.maxAttempts), IdempotencyKey: t.idem,
	}, true
}

// task parses {"kind":…,…} after optional white space into t.
func (p *fastParser) task(t *fastTaskReq) bool {
	p.ws()
	if !p.ch('{') {
		return false
	}
	return p.members('}', func() bool {
		name, ok := p.plainString()
		if !ok || !p.colon() {
			return false
		}
		p.ws()
		switch string(name) {
		case "kind":
			v, ok := p.plainString()
			if !ok {
				return false
			}
			if string(v) != p.kind {
				p.kind = string(v)
			}
			t.kind = p.kind
		case "key":
			v, ok := p.plainString()
			if !ok {
				return false
			}
			t.key = string(v)
		case "idempotency_key":
			v, ok := p.plainString()
			if !ok {
				return false
			}
			t.idem = string(v)
		case "timeout_ms":
			if t.timeoutMs, ok = p.smallInt(); !ok {
				return false
			}
		case "max_attempts":
			if t.maxAttempts, ok = p.smallInt(); !ok {
				return false
			}
		case "payload":
			start := p.i
			if !p.value(0) {
				return false
			}
			t.payload = p.b[start:p.i]
		default:
			return false
		}
		return true
	})
}

// members parses the rest of an object or array whose opening bracket was
// just read: elements read by elem, comma separated, up to close.
func (p *fastParser) members(close byte, elem func() bool) bool {
	p.ws()
	if p.ch(close) {
		return true
	}
	for {
		p.ws()
		if !elem() {
			return false
		}
		p.ws()
		if p.ch(close) {
			return true
		}
		if !p.ch(',') {
			return false
		}
	}
}

// ws skips JSON white space.
func (p *fastParser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// lit consumes s if the input continues with it.
func (p *fastParser) lit(s string) bool {
	if !bytes.HasPrefix(p.b[p.i:], []byte(s)) {
		return false
	}
	p.i += len(s)
	return true
}

// ch consumes the byte c if the input continues with it.
func (p *fastParser) ch(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// end reports whether only white space is left.
func (p *fastParser) end() bool {
	p.ws()
	return p.i == len(p.b)
}

// name consumes white space and the object key "s".
func (p *fastParser) name(s string) bool {
	p.ws()
	v, ok := p.plainString()
	return ok && string(v) == s
}

// colon consumes white space and a colon.
func (p *fastParser) colon() bool {
	p.ws()
	return p.ch(':')
}

// plainString consumes a string without escapes or control characters,
// in valid UTF-8 (so that it decodes to exactly its bytes), and returns
// its content.
func (p *fastParser) plainString() ([]byte, bool) {
	if !p.ch('"') {
		return nil, false
	}
	start := p.i
	ascii := true
	for ; p.i < len(p.b); p.i++ {
		switch c := p.b[p.i]; {
		case c == '"':
			s := p.b[start:p.i]
			p.i++
			return s, ascii || utf8.Valid(s)
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, false
}

// smallInt consumes a JSON integer from 0 to 10^18-1 without sign,
// fraction or exponent.
func (p *fastParser) smallInt() (int64, bool) {
	start := p.i
	var n int64
	for p.i < len(p.b) && '0' <= p.b[p.i] && p.b[p.i] <= '9' {
		n = n*10 + int64(p.b[p.i]-'0')
		p.i++
	}
	digits := p.i - start
	if digits == 0 || digits > 18 || (digits > 1 && p.b[start] == '0') {
		return 0, false
	}
	if p.i < len(p.b) {
		switch p.b[p.i] {
		case '.', 'e', 'E':
			return 0, false
		}
	}
	return n, true
}

// value consumes any valid JSON value, as strictly as encoding/json's
// scanner.
func (p *fastParser) value(depth int) bool {
	if p.i >= len(p.b) || depth > maxFastDepth {
		return false
	}
	switch c := p.b[p.i]; {
	case c == '{':
		p.i++
		return p.members('}', func() bool {
			if !p.jsonString() || !p.colon() {
				return false
			}
			p.ws()
			return p.value(depth + 1)
		})
	case c == '[':
		p.i++
		return p.members(']', func() bool { return p.value(depth + 1) })
	case c == '"':
		return p.jsonString()
	case c == '-' || '0' <= c && c <= '9':
		return p.number()
	}
	return p.lit("true") || p.lit("false") || p.lit("null")
}

// jsonString consumes a JSON string with any valid escapes.
func (p *fastParser) jsonString() bool {
	if !p.ch('"') {
		return false
	}
	for p.i < len(p.b) {
		c := p.b[p.i]
		p.i++
		switch {
		case c == '"':
			return true
		case c < 0x20:
			return false
		case c == '\\':
			if p.i >= len(p.b) {
				return false
			}
			e := p.b[p.i]
			p.i++
			switch e {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if p.i+4 > len(p.b) {
					return false
				}
				for _, h := range p.b[p.i : p.i+4] {
					if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
						return false
					}
				}
				p.i += 4
			default:
				return false
			}
		}
	}
	return false
}

// number consumes a JSON number.
func (p *fastParser) number() bool {
	digits := func() int {
		start := p.i
		for p.i < len(p.b) && '0' <= p.b[p.i] && p.b[p.i] <= '9' {
			p.i++
		}
		return p.i - start
	}
	p.ch('-')
	if p.ch('0') {
		// no more integer digits after a leading zero
	} else if digits() == 0 {
		return false
	}
	if p.ch('.') && digits() == 0 {
		return false
	}
	if p.ch('e') || p.ch('E') {
		if !p.ch('+') {
			p.ch('-')
		}
		if digits() == 0 {
			return false
		}
	}
	return true
}
