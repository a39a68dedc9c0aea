package api

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/atomicflow/atomicflow/pkg/engine"
)

// slowTask is DecodeTask without the fast path.
func slowTask(r io.Reader) (engine.Submission, error) {
	var tr TaskRequest
	if err := decodeStrict(r, &tr); err != nil {
		return engine.Submission{}, err
	}
	return tr.submission(0)
}

// sameResult fails unless two decodes agree: equal submissions (nil and
// empty payloads apart) or errors of the same type and text.
func sameResult(t *testing.T, what string, body []byte, got, want any, gotErr, wantErr error) {
	t.Helper()
	if (gotErr == nil) != (wantErr == nil) || gotErr != nil && (gotErr.Error() != wantErr.Error() || reflect.TypeOf(gotErr) != reflect.TypeOf(wantErr)) {
		t.Fatalf("%s(%q): error %v, want %v", what, body, gotErr, wantErr)
	}
	var de, we *DecodeError
	if errors.As(gotErr, &de) != errors.As(wantErr, &we) || de != nil && *de != *we {
		t.Fatalf("%s(%q): error %#v, want %#v", what, body, de, we)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s(%q):\n got %#v\nwant %#v", what, body, got, want)
	}
}

// checkSame decodes body with and without the fast path.
func checkSame(t *testing.T, body []byte) {
	t.Helper()
	sub, err := DecodeTask(bytes.NewReader(body))
	wsub, werr := slowTask(bytes.NewReader(body))
	sameResult(t, "DecodeTask", body, sub, wsub, err, werr)
	for _, max := range []int{0, 1, 2, 100} {
		subs, err := DecodeBatch(bytes.NewReader(body), max)
		wsubs, werr := decodeBatch(bytes.NewReader(body), max)
		sameResult(t, "DecodeBatch", body, subs, wsubs, err, werr)
	}
}

// fastCases are bodies near the edge of what the fast path takes.
var fastCases = []string{
	`{"kind":"echo"}`, ` {"kind":"echo"} `, "\t{\r\n\"kind\" : \"echo\" }\n",
	`{"kind":"echo","payload":null}`, `{"kind":"echo","payload": null }`,
	`{"kind":"echo","payload":{"a":[1,2.5e-3,-0,{"b":null,"c":"\u00e9\n\"x"}],"t":true,"f":false}}`,
	`{"kind":"echo","payload":"x"}`, `{"kind":"echo","payload":""}`, `{"kind":"echo","payload":12}`,
	`{"kind":"echo","payload":[]}`, `{"kind":"echo","payload":{}}`, `{"kind":"echo","payload":[ ]}`,
	`{"kind":"echo","payload":01}`, `{"kind":"echo","payload":1.}`, `{"kind":"echo","payload":.1}`,
	`{"kind":"echo","payload":1e}`, `{"kind":"echo","payload":-}`, `{"kind":"echo","payload":"\x"}`,
	`{"kind":"echo","payload":"\u12"}`, `{"kind":"echo","payload":"a` + "\x01" + `"}`,
	`{"kind":"echo","payload":"` + "\xff\xfe" + `"}`, `{"kind":"` + "\xff" + `"}`, `{"kind":"é"}`,
	`{"kind":"echo","payload":tru}`, `{"kind":"echo","payload":nul}`, `{"kind":"echo","payload":[1,]}`,
	`{"kind":"echo","payload":{"a":1,}}`, `{"kind":"echo","payload":{"a"}}`, `{"kind":"echo","payload":{1:1}}`,
	`{"kind":"echo","key":"k","timeout_ms":10,"max_attempts":3,"idempotency_key":"i"}`,
	`{"kind":"echo","timeout_ms":0,"max_attempts":0}`, `{"kind":"echo","timeout_ms":-0}`,
	`{"kind":"echo","timeout_ms":-1}`, `{"kind":"echo","timeout_ms":1.0}`, `{"kind":"echo","timeout_ms":1e3}`,
	`{"kind":"echo","timeout_ms":00}`, `{"kind":"echo","timeout_ms":999999999999999999}`,
	`{"kind":"echo","timeout_ms":9999999999999999999}`, `{"kind":"echo","timeout_ms":"1"}`,
	`{"kind":"echo","max_attempts":1000}`, `{"kind":"echo","max_attempts":1001}`,
	`{"kind":"echo","timeout_ms":null}`, `{"kind":null}`, `{"kind":""}`, `{}`, `{"kind":1}`,
	`{"Kind":"echo"}`, `{"KIND":"echo"}`, `{"kind":"echo","kind":"cpu"}`, `{"kind":"echo","kind":""}`,
	`{"kind":"echo","payload":1,"payload":null}`, `{"kind":"e\u0063ho"}`, `{"kind":"echo","x":1}`,
	`{"kind":"echo"}{}`, `{"kind":"echo"} x`, `{"kind":"echo"`, ``, ` `, `null`, `[]`, `"x"`,
	`{"tasks":[{"kind":"echo","payload":{"n":1}},{"kind":"echo","payload":{"n":2}}]}`,
	`{"tasks":[{"kind":"echo"}]}`, ` { "tasks" : [ { "kind" : "echo" } , {"kind":"cpu"} ] } `,
	`{"tasks":[]}`, `{"tasks":null}`, `{"tasks":[null]}`, `{"tasks":[{}]}`, `{"tasks":[{"kind":"echo"},]}`,
	`{"tasks":[{"kind":"echo"}],"tasks":[{"kind":"cpu"}]}`, `{"tasks":[{"kind":"echo"}],"x":1}`,
	`{"Tasks":[{"kind":"echo"}]}`, `{"tasks":[{"kind":"echo"}]}]`, `{"tasks":[{"kind":"echo"}]`,
	`{"tasks":[{"kind":"echo"},{"kind":"echo","max_attempts":-1}]}`, `{"tasks":{"kind":"echo"}}`,
	`{"tasks":[{"kind":"echo"},{"kind":"echo"},{"kind":"echo"}]}`,
	`{"tasks":[{"kind":"a","payload":"p1"},{"kind":"b"},{"kind":"a","payload":[1]}]}`,
	`{"kind":"echo","payload":` + strings.Repeat("[", 1500) + strings.Repeat("]", 1500) + `}`,
	`{"kind":"echo","payload":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`,
}

func TestFastPathAgrees(t *testing.T) {
	for _, c := range fastCases {
		checkSame(t, []byte(c))
	}
}

// The fast path hands out payloads that do not share memory with each
// other or the body.
func TestFastPayloadsApart(t *testing.T) {
	body := []byte(`{"tasks":[{"kind":"a","payload":[1]},{"kind":"a","payload":[2]}]}`)
	subs, err := DecodeBatch(bytes.NewReader(body), 10)
	if err != nil {
		t.Fatal(err)
	}
	subs[0].Payload = append(subs[0].Payload, '!')
	if string(subs[1].Payload) != "[2]" {
		t.Fatalf("append to one payload changed the next: %q", subs[1].Payload)
	}
	clear(body)
	if string(subs[0].Payload) != "[1]!" || string(subs[1].Payload) != "[2]" {
		t.Fatalf("payloads share the body: %q %q", subs[0].Payload, subs[1].Payload)
	}
}

// A read error part-way replays to encoding/json: the same error as
// before, whether or not the bytes before it were already bad.
func TestFastReadError(t *testing.T) {
	boom := errors.New("boom")
	for _, c := range []string{`{"tasks":[{"kind":"echo"}`, `{"tasks":[{"kind":"echo"}]}`, `x`, `{"kind":"echo"}`, ``} {
		r := func() io.Reader { return io.MultiReader(strings.NewReader(c), errReader{boom}) }
		_, err := DecodeBatch(r(), 10)
		_, werr := decodeBatch(r(), 10)
		sameResult(t, "DecodeBatch", []byte(c), nil, nil, err, werr)
		_, err = DecodeTask(r())
		_, werr = slowTask(r())
		sameResult(t, "DecodeTask", []byte(c), nil, nil, err, werr)
	}
}

// FuzzFastPath: the fast path and encoding/json agree on every body.
func FuzzFastPath(f *testing.F) {
	for _, c := range fastCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkSame(t, body)
	})
}

// The common shapes do take the fast path.
func TestFastPathTaken(t *testing.T) {
	if _, ok := fastBatch([]byte(`{"tasks":[{"kind":"a","payload":"p1"},{"kind":"b"},{"kind":"a","payload":[1]}]}`), 10); !ok {
		t.Error("batch of three not taken")
	}
	for _, c := range []string{fastCases[0], fastCases[5], fastCases[29], ` {"kind":"echo","payload": {"n" : [1, 2]} } `} {
		if _, ok := fastTask([]byte(c)); !ok {
			t.Errorf("%s not taken", c)
		}
	}
}

// BenchmarkDecodeBatchJSON is BenchmarkDecodeBatch through encoding/json
// alone (DecodeBatch before the fast path), for comparison.
func BenchmarkDecodeBatchJSON(b *testing.B) {
	body := []byte(`{"tasks":[` + strings.Repeat(`{"kind":"echo","payload":{"n":1}},`, 9_999) + `{"kind":"echo","payload":{"n":1}}]}`)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if subs, err := decodeBatch(bytes.NewReader(body), 10_000); err != nil || len(subs) != 10_000 {
			b.Fatal(len(subs), err)
		}
	}
}
