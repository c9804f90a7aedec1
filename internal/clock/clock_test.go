package clock

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestSleep(t *testing.T) {
	if err := Sleep(context.Background(), time.Millisecond); err != nil {
		t.Errorf("Sleep: %v", err)
	}
	done, cancel := context.WithCancel(context.Background())
	cancel()
	// A done context ends the pause at once, however long it was.
	if err := Sleep(done, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("Sleep with a done context: %v; want context.Canceled", err)
	}
	if err := Sleep(done, 0); !errors.Is(err, context.Canceled) {
		t.Errorf("Sleep(0) with a done context: %v; want context.Canceled", err)
	}
	if err := Sleep(context.Background(), -time.Second); err != nil {
		t.Errorf("Sleep(-1s): %v", err)
	}
}
