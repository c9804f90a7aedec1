package file

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/httpmirror/httpmirror/storage"
)

var magic = [8]byte{'H', 'M', 'I', 'R', 'R', 'O', 'R', '1'}

// meta is the JSON form of the trailer.
type meta struct {
	Key          string      `json:"key"`
	Size         int64       `json:"size"`
	ETag         string      `json:"etag,omitempty"`
	LastModified int64       `json:"lastModified,omitempty"` // Unix seconds
	ContentType  string      `json:"contentType,omitempty"`
	Header       http.Header `json:"header,omitempty"`
	StoredAt     int64       `json:"storedAt"` // Unix nanoseconds
}

func (m *meta) info() storage.Info {
	i := storage.Info{
		Key:         m.Key,
		Size:        m.Size,
		ETag:        m.ETag,
		ContentType: m.ContentType,
		Header:      m.Header,
		StoredAt:    time.Unix(0, m.StoredAt),
	}
	if m.LastModified != 0 {
		i.LastModified = time.Unix(m.LastModified, 0).UTC()
	}
	return i
}

func metaOf(i storage.Info) meta {
	m := meta{
		Key:         i.Key,
		Size:        i.Size,
		ETag:        i.ETag,
		ContentType: i.ContentType,
		Header:      i.Header,
		StoredAt:    i.StoredAt.UnixNano(),
	}
	if !i.LastModified.IsZero() {
		m.LastModified = i.LastModified.Unix()
	}
	return m
}

// errCorrupt marks an object file whose trailer does not check out. It wraps
// ErrNotFound: a damaged object is never served, it is refetched.
var errCorrupt = fmt.Errorf("%w: damaged object file", storage.ErrNotFound)

// readInfo reads and checks the trailer of the object file of key, of the
// given size.
func readInfo(f *os.File, size int64, key string) (storage.Info, error) {
	m, err := readMeta(f, size)
	if err != nil {
		return storage.Info{}, err
	}
	if m.Key != key {
		return storage.Info{}, errCorrupt
	}
	return m.info(), nil
}

// readMeta reads and checks the trailer of an object file of the given
// size, whatever its key.
func readMeta(f *os.File, size int64) (meta, error) {
	if size < trailerLen {
		return meta{}, errCorrupt
	}
	n := min(size, tailRead)
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, size-n); err != nil {
		return meta{}, err
	}
	tr := buf[n-trailerLen:]
	if [8]byte(tr[8:]) != magic {
		return meta{}, errCorrupt
	}
	ml := binary.BigEndian.Uint64(tr[:8])
	if ml > maxMeta || int64(ml)+trailerLen > size {
		return meta{}, errCorrupt
	}
	var mb []byte
	if int64(ml)+trailerLen <= n {
		mb = buf[n-trailerLen-int64(ml) : n-trailerLen]
	} else {
		mb = make([]byte, ml)
		if _, err := f.ReadAt(mb, size-trailerLen-int64(ml)); err != nil {
			return meta{}, err
		}
	}
	var m meta
	if err := json.Unmarshal(mb, &m); err != nil {
		return meta{}, errCorrupt
	}
	if m.Size < 0 || m.Size+int64(ml)+trailerLen != size {
		return meta{}, errCorrupt
	}
	return m, nil
}

// encodeTrailer returns the metadata trailer written after an object's
// body: the JSON metadata, its length and the magic.
func encodeTrailer(info storage.Info) ([]byte, error) {
	mb, err := json.Marshal(metaOf(info))
	if err != nil {
		return nil, err
	}
	buf := make([]byte, 0, len(mb)+trailerLen)
	buf = append(buf, mb...)
	buf = binary.BigEndian.AppendUint64(buf, uint64(len(mb)))
	return append(buf, magic[:]...), nil
}
