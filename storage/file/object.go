package file

import (
	"bytes"
	"io"
	"os"
	"syscall"

	"github.com/httpmirror/httpmirror/storage"
)

// object is an open object file. Read and Seek are confined to the body;
// the trailer is never visible.
//
// Reads use pread at the object's own position, and Seek only moves that
// position, so serving a range costs no lseek. The file descriptor's offset
// matters only to sendfile, which reads from it: SyscallConn sets it to the
// position first.
type object struct {
	f    *os.File
	info storage.Info
	ix   *index
	e    *entry // the object's index entry, nil if it is no longer indexed
	// ino and size are f's inode and size, for the index to keep f open
	// for the next reader (index.closed).
	ino  uint64
	size int64
	// off is the position, or -1 when unknown because sendfile has moved
	// the descriptor's offset by an amount we do not see.
	off int64
}

func (o *object) Info() storage.Info { return o.info }

// pos returns the position, recovering it from the descriptor after
// sendfile.
func (o *object) pos() (int64, error) {
	if o.f == nil {
		return 0, os.ErrClosed // its descriptor may be another reader's now
	}
	if o.off < 0 {
		off, err := o.f.Seek(0, io.SeekCurrent)
		if err != nil {
			return 0, err
		}
		o.off = off
	}
	return o.off, nil
}

func (o *object) Read(p []byte) (int, error) {
	off, err := o.pos()
	if err != nil {
		return 0, err
	}
	remain := o.info.Size - off
	if remain <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > remain {
		p = p[:remain]
	}
	n, err := o.f.ReadAt(p, off)
	o.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

// ReadAt reads the body at off, never the trailer; it does not move the
// position.
func (o *object) ReadAt(p []byte, off int64) (int, error) {
	if o.f == nil {
		return 0, os.ErrClosed
	}
	if off >= o.info.Size {
		return 0, io.EOF
	}
	short := false
	if remain := o.info.Size - off; int64(len(p)) > remain {
		p, short = p[:remain], true
	}
	n, err := o.f.ReadAt(p, off)
	if err == nil && short {
		err = io.EOF
	}
	return n, err
}

func (o *object) Seek(offset int64, whence int) (int64, error) {
	var cur int64
	if whence == io.SeekCurrent {
		var err error
		if cur, err = o.pos(); err != nil {
			return 0, err
		}
	}
	abs, err := storage.SeekOffset(cur, o.info.Size, offset, whence)
	if err != nil {
		return 0, err
	}
	o.off = abs
	return abs, nil
}

// SyscallConn exposes the file descriptor so that the kernel can copy the
// body to a socket (net.TCPConn.ReadFrom uses it for sendfile, reading from
// the descriptor's offset). Callers go through an io.LimitedReader sized
// from Seek, so the trailer is never sent.
func (o *object) SyscallConn() (syscall.RawConn, error) {
	off, err := o.pos()
	if err != nil {
		return nil, err
	}
	if _, err := o.f.Seek(off, io.SeekStart); err != nil {
		return nil, err
	}
	o.off = -1
	return o.f.SyscallConn()
}

// Close gives the descriptor back to the index, which keeps it for the
// next reader of the same file or closes it.
func (o *object) Close() error {
	if o.f == nil {
		return os.ErrClosed
	}
	o.ix.closed(o.e, o.f, o.ino, o.size)
	o.e, o.f = nil, nil
	return nil
}

// memObject is an object whose body is held in memory. The reader is held
// by value: opening one costs a single allocation.
type memObject struct {
	r    bytes.Reader
	data []byte
	info storage.Info
}

func newMemObject(data []byte, info storage.Info) *memObject {
	o := &memObject{data: data, info: info}
	o.r.Reset(data)
	return o
}

func (o *memObject) Read(p []byte) (int, error)                { return o.r.Read(p) }
func (o *memObject) Seek(off int64, whence int) (int64, error) { return o.r.Seek(off, whence) }
func (o *memObject) ReadAt(p []byte, off int64) (int, error)   { return o.r.ReadAt(p, off) }
func (o *memObject) WriteTo(w io.Writer) (int64, error)        { return o.r.WriteTo(w) }
func (o *memObject) Info() storage.Info                        { return o.info }
func (o *memObject) Close() error                              { return nil }

// Bytes implements storage.InMemory.
func (o *memObject) Bytes() []byte { return o.data }
