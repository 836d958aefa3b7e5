// Package log builds the structured loggers every moat process uses. Lines
// carry the process role ("cli", "boot", "init", "gofer") so that a log file
// shared by all of them reads as one story, and errors come out the way
// containerd's shim and conmon parse runc's: with --log-format json each line
// is {"level":"error","msg":...,"time":...}.
package log

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// Formats accepted by --log-format.
const (
	FormatText = "text"
	FormatJSON = "json"
)

// New returns a logger writing to w in the given format. Debug lines are
// kept only when debug is set.
func New(w io.Writer, format string, debug bool, role string) (*slog.Logger, error) {
	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: lowerLevel}
	var h slog.Handler
	switch format {
	case FormatText, "":
		h = slog.NewTextHandler(w, opts)
	case FormatJSON:
		h = slog.NewJSONHandler(w, opts)
	default:
		return nil, fmt.Errorf("unknown log format %q (want text or json)", format)
	}
	l := slog.New(h)
	if role != "" {
		l = l.With("role", role)
	}
	return l, nil
}

// Discard is a logger that drops everything.
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// lowerLevel writes levels as logrus does ("error", "warning"), which is what
// runc's consumers match on.
func lowerLevel(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.LevelKey {
		lv, _ := a.Value.Any().(slog.Level)
		name := strings.ToLower(lv.String())
		if lv == slog.LevelWarn {
			name = "warning"
		}
		return slog.String(slog.LevelKey, name)
	}
	return a
}

// FromFD opens an inherited log descriptor (--log-fd). A negative fd means
// stderr.
func FromFD(fd int, format string, debug bool, role string) (*slog.Logger, error) {
	var w io.Writer = os.Stderr
	if fd >= 0 {
		w = os.NewFile(uintptr(fd), "log")
	}
	return New(w, format, debug, role)
}

// Enabled reports whether l logs at debug level.
func Enabled(l *slog.Logger) bool { return l.Enabled(context.Background(), slog.LevelDebug) }
