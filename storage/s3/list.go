package s3

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/httpmirror/httpmirror/storage"
)

// A listing runs through three phases, each a walk of object keys in S3's
// order: the readable names under RootDir + prefix; for a prefix ending in
// "/", the directory object of the prefix itself (stored beside it, as
// "a/b~~dir", not under it); and the hashed names, whose keys only their
// metadata entries hold.
const (
	phaseReadable = 'r'
	phaseDir      = 'd'
	phaseHashed   = 'h'
)

// maxListCalls bounds the store requests one List call makes before it
// returns a page, full or not.
const maxListCalls = 20

// List implements storage.Lister. Each object's LastAccess and Hits come
// from the access records (access.go): reading them costs one LIST and a
// GET per record, once per Config.AccessFlushInterval. A page token names the phase and the
// last object key seen in it. Objects under hashed names are listed only
// when their metadata entry records their key (it does for objects this
// version wrote, unless the key is too long for S3's 2 KiB of metadata);
// telling their keys takes one HEAD request each, so a listing costs one
// request per hashed object in the bucket, whatever the prefix. Such
// objects are rare: their keys contain "~~" or are over S3's limits.
func (b *Backend) List(ctx context.Context, prefix, token string, limit int) ([]storage.Info, string, error) {
	if limit <= 0 {
		limit = storage.DefaultListLimit
	}
	phase, after, err := decodeToken(prefix, token)
	if err != nil {
		return nil, "", err
	}
	var out []storage.Info
	for calls := 0; calls < maxListCalls && len(out) < limit; calls++ {
		switch phase {
		case phaseReadable:
			if strings.Contains(prefix, marker) {
				// Keys with the marker are all stored under hashed names.
				phase, after = phaseHashed, ""
				continue
			}
			objs, last, done, err := b.listPage(ctx, b.prefix+prefix, after, limit-len(out))
			if err != nil {
				return nil, "", err
			}
			for _, o := range objs {
				key, ok := b.readableKey(aws.ToString(o.Key))
				if ok && strings.HasPrefix(key, prefix) {
					out = append(out, storage.Info{Key: key, Size: aws.ToInt64(o.Size), StoredAt: aws.ToTime(o.LastModified)})
				}
			}
			after = last
			if done {
				phase, after = phaseDir, ""
			}
		case phaseDir:
			phase, after = phaseHashed, ""
			if !strings.HasSuffix(prefix, "/") {
				continue
			}
			if okey, err := b.ObjectKey(prefix); err != nil || !strings.HasSuffix(okey, dirSuffix) {
				continue // no such key, or stored under a hashed name
			}
			info, err := b.Stat(ctx, prefix)
			if err == nil {
				out = append(out, info)
			} else if !errors.Is(err, storage.ErrNotFound) {
				return nil, "", err
			}
		case phaseHashed:
			objs, last, done, err := b.listPage(ctx, b.prefix+hashedDir+"/", after, limit-len(out))
			if err != nil {
				return nil, "", err
			}
			for _, o := range objs {
				info, ok, err := b.headHashed(ctx, aws.ToString(o.Key))
				if err != nil {
					return nil, "", err
				}
				if ok && strings.HasPrefix(info.Key, prefix) {
					out = append(out, info)
				}
			}
			if done {
				return b.annotate(ctx, out), "", nil
			}
			after = last
		}
	}
	return b.annotate(ctx, out), encodeToken(prefix, phase, after), nil
}

// annotate sets the last access and hits of the listed objects (see
// access.go). Records that cannot be read leave the counts of this
// process alone: the listing is worth more than the counts.
func (b *Backend) annotate(ctx context.Context, objs []storage.Info) []storage.Info {
	view, err := b.acc.cachedOthers(ctx)
	if err != nil && ctx.Err() == nil {
		b.log.Warn("s3: listing without the other replicas' reads", "err", err)
	}
	b.acc.annotate(objs, view)
	return objs
}

// listPage lists up to n objects under p after the object key after, and
// returns them, the last key listed and whether the walk is done.
func (b *Backend) listPage(ctx context.Context, p, after string, n int) ([]types.Object, string, bool, error) {
	in := &s3.ListObjectsV2Input{Bucket: &b.bucket, Prefix: aws.String(p), MaxKeys: aws.Int32(int32(min(n, 1000)))}
	if after != "" {
		in.StartAfter = aws.String(after)
	}
	res, err := b.client.ListObjectsV2(ctx, in)
	if err != nil {
		return nil, "", false, fmt.Errorf("s3: listing %s: %w", p, err)
	}
	last := after
	if len(res.Contents) > 0 {
		last = aws.ToString(res.Contents[len(res.Contents)-1].Key)
	}
	return res.Contents, last, !aws.ToBool(res.IsTruncated) || len(res.Contents) == 0, nil
}

// readableKey returns the storage key stored under the readable object key
// okey (a plain or directory name under the root directory), if it is one
// that Stat of the key would find.
func (b *Backend) readableKey(okey string) (string, bool) {
	name, ok := strings.CutPrefix(okey, b.prefix)
	if !ok {
		return "", false
	}
	key := name
	if body, dir := strings.CutSuffix(name, dirSuffix); dir {
		key = body + "/"
	}
	if strings.Contains(key, marker) || storage.ValidateKey(key) != nil {
		return "", false
	}
	if k, err := b.ObjectKey(key); err != nil || k != okey {
		return "", false
	}
	return key, true
}

// headHashed returns the metadata of the object under the hashed name okey,
// if its metadata entry records its key.
func (b *Backend) headHashed(ctx context.Context, okey string) (storage.Info, bool, error) {
	out, err := b.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &b.bucket, Key: &okey})
	if err != nil {
		if isNotFound(err) {
			return storage.Info{}, false, nil // deleted since it was listed
		}
		return storage.Info{}, false, fmt.Errorf("s3: stat %s: %w", okey, err)
	}
	entry := out.Metadata[metaKey]
	key := metaStorageKey(entry)
	if k, err := b.ObjectKey(key); key == "" || err != nil || k != okey {
		return storage.Info{}, false, nil
	}
	info := storage.Info{Key: key, Size: aws.ToInt64(out.ContentLength)}
	decodeMeta(entry, &info)
	if info.StoredAt.IsZero() {
		info.StoredAt = aws.ToTime(out.LastModified)
	}
	return info, true, nil
}

// hashedKey returns key when okey is a hashed object name, whose metadata
// entry records its key, else "".
func (b *Backend) hashedKey(okey, key string) string {
	if strings.HasPrefix(strings.TrimPrefix(okey, b.prefix), hashedDir+"/") {
		return key
	}
	return ""
}

func encodeToken(prefix string, phase byte, after string) string {
	return storage.PageToken(prefix, string(phase)+after)
}

func decodeToken(prefix, token string) (byte, string, error) {
	if token == "" {
		return phaseReadable, "", nil
	}
	pos, err := storage.DecodePageToken(prefix, token)
	if err != nil || pos == "" || (pos[0] != phaseReadable && pos[0] != phaseDir && pos[0] != phaseHashed) {
		return 0, "", storage.ErrInvalidToken
	}
	return pos[0], pos[1:], nil
}

// Location implements storage.Locator: the object's s3://bucket/key URL.
func (b *Backend) Location(key string) (string, error) {
	okey, err := b.ObjectKey(key)
	if err != nil {
		return "", err
	}
	return "s3://" + b.bucket + "/" + okey, nil
}
