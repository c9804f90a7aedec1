package memory_test

import (
	"testing"

	"github.com/httpmirror/httpmirror/storage"
	"github.com/httpmirror/httpmirror/storage/memory"
	"github.com/httpmirror/httpmirror/storage/storagetest"
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Backend { return memory.New() })
}
