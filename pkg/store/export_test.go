package store

// PeekRecord exposes the metadata scanner the indexes use, so that the
// fuzz test can check it agrees with UnmarshalRecord.
func PeekRecord(b []byte) (id, idemKey string, state State, finishedAt int64, err error) {
	m, err := peekRecord(b)
	return string(m.id), string(m.idemKey), m.state, m.finishedAt, err
}
