package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/httpmirror/httpmirror/storage"
)

// ErrChanged is returned by an Object's Read when the stored object was
// replaced after Open: S3 cannot serve the old version's remaining bytes,
// and splicing in the new version's would corrupt the response.
var ErrChanged = errors.New("s3: object replaced while being read")

// object reads a stored object with ranged GETs. A GET starts at the first
// Read after Open or after a Seek that moved away from where the current
// body is, and runs to the object's end; it is closed when the reader
// seeks elsewhere or is closed.
type object struct {
	b    *Backend
	ctx  context.Context // Open's: the reads run on it
	okey string
	etag string // S3's ETag at Open; every GET is conditional on it
	info storage.Info

	off     int64         // position of the next Read
	body    io.ReadCloser // open GET body, or nil
	bodyOff int64         // position of body's next byte
	resumes int           // broken bodies resumed so far
	closed  bool
	key     string // the storage key, for the count of readers; "" when not counted (Reread)
}

// maxResumes bounds how many broken GET bodies one Object resumes.
const maxResumes = 3

func (o *object) Info() storage.Info { return o.info }

func (o *object) Read(p []byte) (int, error) {
	remain := o.info.Size - o.off
	if remain <= 0 {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if int64(len(p)) > remain {
		p = p[:remain]
	}
	for {
		if o.body == nil || o.bodyOff != o.off {
			if err := o.get(); err != nil {
				return 0, err
			}
		}
		n, err := o.body.Read(p)
		o.off += int64(n)
		o.bodyOff += int64(n)
		if err == nil {
			return n, nil
		}
		o.closeBody()
		if err == io.EOF && o.off >= o.info.Size {
			if n > 0 {
				return n, nil
			}
			return 0, io.EOF
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		// A body that broke (the connection dropped, the store restarted)
		// is resumed where it stopped: the next GET is conditional on the
		// same ETag, so the bytes still come from the same object.
		if o.resumes >= maxResumes || o.ctx.Err() != nil {
			return n, fmt.Errorf("s3: reading %s: %w", o.okey, err)
		}
		o.resumes++
		if n > 0 {
			return n, nil
		}
	}
}

// get starts a GET of the rest of the object from o.off.
func (o *object) get() error {
	o.closeBody()
	in := &s3.GetObjectInput{
		Bucket:  &o.b.bucket,
		Key:     &o.okey,
		Range:   strPtr("bytes=" + strconv.FormatInt(o.off, 10) + "-"),
		IfMatch: strPtr(o.etag),
	}
	if o.etag == "" {
		in.IfMatch = nil
	}
	out, err := o.b.client.GetObject(o.ctx, in)
	if err != nil {
		var ae smithy.APIError
		if errors.As(err, &ae) && ae.ErrorCode() == "PreconditionFailed" || isNotFound(err) {
			return fmt.Errorf("%w: %s", ErrChanged, o.okey)
		}
		return fmt.Errorf("s3: reading %s: %w", o.okey, err)
	}
	o.body = out.Body
	o.bodyOff = o.off
	return nil
}

func (o *object) closeBody() {
	if o.body != nil {
		o.body.Close()
		o.body = nil
	}
}

// Seek moves the read position without any request.
func (o *object) Seek(offset int64, whence int) (int64, error) {
	abs, err := storage.SeekOffset(o.off, o.info.Size, offset, whence)
	if err != nil {
		return 0, err
	}
	o.off = abs
	return abs, nil
}

func (o *object) Close() error {
	o.closeBody()
	if !o.closed && o.key != "" {
		o.closed = true
		o.b.acc.closed(o.key)
	}
	return nil
}

func strPtr(s string) *string { return &s }
