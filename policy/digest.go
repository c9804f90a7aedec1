package policy

import (
	"encoding/base64"
	"strings"

	"github.com/httpmirror/httpmirror/storage"
)

// DigestHeader is the stored header (internal: never sent as it is, see
// Internal) that holds the SHA-256 of an object's stored bytes, verified
// against what its origin published or computed while it was fetched, in
// the form of an RFC 9530 Repr-Digest member: "sha-256=:BASE64:". Hits
// send it as the Repr-Digest header.
const DigestHeader = "X-Httpmirror-Digest"

// FormatSHA256 returns the DigestHeader value of the SHA-256 sum.
func FormatSHA256(sum []byte) string {
	return "sha-256=:" + base64.StdEncoding.EncodeToString(sum) + ":"
}

// StoredSHA256 returns the SHA-256 kept in the metadata of a stored object,
// and false when it has none (it was stored before digests were kept) or
// the value is malformed.
func StoredSHA256(info storage.Info) ([]byte, bool) {
	v := info.Header.Get(DigestHeader)
	rest, ok := strings.CutPrefix(v, "sha-256=:")
	if !ok || !strings.HasSuffix(rest, ":") {
		return nil, false
	}
	sum, err := base64.StdEncoding.DecodeString(strings.TrimSuffix(rest, ":"))
	if err != nil || len(sum) != 32 {
		return nil, false
	}
	return sum, true
}
