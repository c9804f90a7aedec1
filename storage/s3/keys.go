package s3

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"github.com/httpmirror/httpmirror/storage"
)

const (
	// marker is the reserved sequence of the key encoding: no key stored
	// under its readable name contains it, so the names that do (directory
	// keys and hashed keys) can never collide with a readable one.
	marker = "~~"
	// dirSuffix replaces the trailing slash of a directory-style key.
	dirSuffix = marker + "dir"
	// hashedDir holds the objects whose keys cannot be stored readably.
	hashedDir = marker + "sha256"
	// claimDir holds the claims of storage.Claimer (cluster leases): no
	// key maps there, so a claim is never an object.
	claimDir = marker + "lease"
	// accessDir holds each process's record of the reads it counted
	// (access.go); no key maps there either.
	accessDir = marker + "access"

	// maxObjectKey is S3's limit on an object key, in bytes.
	maxObjectKey = 1024
	// maxSegment is the longest file name of posix file systems, which
	// file-backed stores (versitygw posix, MinIO single-drive) map each
	// key segment to.
	maxSegment = 255
)

// objectKey maps a storage key to its S3 object key under prefix (RootDir
// plus "/", or empty):
//
//   - a plain key is stored as prefix + key, so the bucket reads like the
//     mirrored sites;
//   - a directory-style key "a/b/" is stored as prefix + "a/b~~dir": a
//     sibling of "a/b", not a child, so that stores backed by a file
//     system can hold both "a/b" and "a/b/" (a file cannot also be a
//     directory);
//   - a key that contains "~~", or whose readable name would exceed S3's
//     1024-byte limit or have a segment longer than 255 bytes, is stored
//     as prefix + "~~sha256/" + h[:2] + "/" + h, h being the hex SHA-256
//     of the key.
//
// The mapping is one-to-one: readable names contain no "~~", directory
// names contain it only in their "~~dir" ending, and hashed names start
// with "~~sha256/". Claims live under prefix + "~~lease/", which no key
// maps to.
func objectKey(prefix, key string) (string, error) {
	if err := storage.ValidateKey(key); err != nil {
		return "", err
	}
	body, dir := strings.CutSuffix(key, "/")
	name := body
	if dir {
		name += dirSuffix
	}
	if !strings.Contains(body, marker) && len(prefix)+len(name) <= maxObjectKey && segmentsFit(name) {
		return prefix + name, nil
	}
	sum := sha256.Sum256([]byte(key))
	h := hex.EncodeToString(sum[:])
	return prefix + hashedDir + "/" + h[:2] + "/" + h, nil
}

func segmentsFit(name string) bool {
	for seg := range strings.SplitSeq(name, "/") {
		if len(seg) > maxSegment {
			return false
		}
	}
	return true
}
