package policy

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultPollInterval is how often a Watcher checks its file when none is set.
// The kubelet itself takes up to a minute to update a mounted ConfigMap, so a
// couple of seconds adds little.
const DefaultPollInterval = 2 * time.Second

// WatcherConfig configures a Watcher.
type WatcherConfig struct {
	// Path is the document file, e.g. /etc/cometd/policy/policy.json. Required.
	Path string
	// Interval is the polling period. 0 means DefaultPollInterval.
	Interval time.Duration
	// Now is the clock for token checks. Nil means time.Now.
	Now func() time.Time
	// OnError is called (on the checking goroutine) with each new load error:
	// the same bad content is reported once. Nil means errors are only kept
	// for Err.
	OnError func(error)
}

// Watcher keeps the enforced Policy in step with a document file.
//
// It polls: every Interval it reads the document and the key files it names,
// and reloads when their content hash changes. Polling content, rather than
// watching inotify events, is what works with a Kubernetes ConfigMap or Secret
// volume, where the kubelet swaps a "..data" symlink to a new directory and
// the file itself never gets a write event; it also picks up a rotated key
// Secret whose document did not change.
//
// A document that does not parse, validate or load (a missing key file, a bad
// key) is refused: the previous policy stays in force and the error is
// reported. The active policy is swapped atomically, so an evaluation sees
// either the old rules or the new ones, never a mix.
type Watcher struct {
	cfg    WatcherConfig
	active atomic.Pointer[Policy]

	checkMu  sync.Mutex // serializes checks and their callbacks
	current  [32]byte   // fingerprint of the active policy's files; checkMu
	badPrint [32]byte   // fingerprint of the last refused content; checkMu

	mu        sync.Mutex // guards lastErr and callbacks
	lastErr   error
	callbacks []func(old, new *Policy)
}

// NewWatcher loads cfg.Path, which must hold a valid document.
func NewWatcher(cfg WatcherConfig) (*Watcher, error) {
	if cfg.Path == "" {
		return nil, errors.New("policy: watcher: no path")
	}
	if cfg.Interval < 0 {
		return nil, fmt.Errorf("policy: watcher: negative interval %v", cfg.Interval)
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultPollInterval
	}
	w := &Watcher{cfg: cfg}
	p, print, err := w.load()
	if err != nil {
		return nil, err
	}
	w.active.Store(p)
	w.current = print
	return w, nil
}

// Policy returns the policy in force. It never returns nil.
func (w *Watcher) Policy() *Policy { return w.active.Load() }

// Version returns the version of the policy in force, for /status.
func (w *Watcher) Version() string { return w.active.Load().Version() }

// Err returns the last load error, or nil when the policy in force matches the
// file's current content.
func (w *Watcher) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastErr
}

// OnReload registers fn, called after each swap with the previous and the new
// policy, on the goroutine that checked, in registration order; the next
// check waits for them. fn must not call Check.
func (w *Watcher) OnReload(fn func(old, new *Policy)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.callbacks = append(w.callbacks, fn)
}

// Run checks the file every Interval until ctx ends.
func (w *Watcher) Run(ctx context.Context) {
	t := time.NewTicker(w.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_, _ = w.Check()
		}
	}
}

// Check reads the file now and swaps in its policy when its content changed.
// It reports whether the policy changed, and the load error when the new
// content is refused (the old policy then stays in force).
func (w *Watcher) Check() (changed bool, err error) {
	w.checkMu.Lock()
	defer w.checkMu.Unlock()
	p, print, err := w.load()
	if err != nil {
		w.mu.Lock()
		report := print != w.badPrint || w.lastErr == nil
		w.lastErr = err
		w.mu.Unlock()
		w.badPrint = print
		if report && w.cfg.OnError != nil {
			w.cfg.OnError(err)
		}
		return false, err
	}
	w.mu.Lock()
	w.lastErr = nil
	cbs := w.callbacks
	w.mu.Unlock()
	if print == w.current {
		return false, nil
	}
	w.current = print
	old := w.active.Swap(p)
	for _, fn := range cbs {
		fn(old, p)
	}
	return true, nil
}

// load reads the document and its key files, returning the policy and the
// fingerprint of everything read. On error the fingerprint covers what could
// be read, so the same bad content is recognised.
func (w *Watcher) load() (*Policy, [32]byte, error) {
	h := sha256.New()
	b, err := os.ReadFile(w.cfg.Path)
	if err != nil {
		fmt.Fprintf(h, "read error: %v", err)
		return nil, sum(h), fmt.Errorf("policy: %w", err)
	}
	fmt.Fprintf(h, "%d:", len(b))
	h.Write(b)
	doc, err := Parse(b)
	if err != nil {
		return nil, sum(h), err
	}
	acl, err := NewACL(doc)
	if err != nil {
		return nil, sum(h), err
	}
	if doc.Auth.Algorithm == "" {
		return &Policy{acl: acl}, sum(h), nil
	}
	base := filepath.Dir(w.cfg.Path)
	files, err := readKeyFiles(doc.Auth, base)
	if err != nil {
		fmt.Fprintf(h, "keys error: %v", err)
		return nil, sum(h), err
	}
	for _, f := range files {
		fmt.Fprintf(h, "key %q %q %d:", f.id, f.path, len(f.data))
		h.Write(f.data)
	}
	keys, err := keysFromFiles(doc.Auth.Algorithm, files)
	if err != nil {
		return nil, sum(h), err
	}
	p, err := newPolicy(acl, keys, PolicyConfig{BaseDir: base, Now: w.cfg.Now})
	return p, sum(h), err
}

func sum(h interface{ Sum([]byte) []byte }) (out [32]byte) {
	copy(out[:], h.Sum(nil))
	return out
}
