package main

import (
	"fmt"
	"log/slog"

	"github.com/cometd-operator/cometd-operator/broker/policy"
	"github.com/cometd-operator/cometd-operator/broker/policy/serverpolicy"
)

// openPolicy loads the channel policy file (the operator's compiled ACL) and
// returns its watcher and the SecurityPolicy that enforces it. An empty path
// means no policy: every operation is allowed. A file that does not load is an
// error at start-up; later bad versions are logged and the rules in force kept.
func openPolicy(path string, log *slog.Logger) (*policy.Watcher, *serverpolicy.Security, error) {
	if path == "" {
		return nil, nil, nil
	}
	w, err := policy.NewWatcher(policy.WatcherConfig{
		Path: path,
		OnError: func(err error) {
			log.Error("channel policy refused; keeping the rules in force", "file", path, "err", err)
		},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("channel policy %s: %w", path, err)
	}
	w.OnReload(func(old, cur *policy.Policy) {
		log.Info("channel policy reloaded", "file", path, "version", w.Version())
	})
	sec, err := serverpolicy.New(serverpolicy.Config{Source: w, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	return w, sec, nil
}
