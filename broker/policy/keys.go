package policy

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// keyFile is the content of one key file.
type keyFile struct {
	id, path string
	data     []byte
}

// readKeyFiles reads the key files auth names, resolving relative paths
// against baseDir and listing directories, in a deterministic order.
func readKeyFiles(auth Auth, baseDir string) ([]keyFile, error) {
	abs := func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(baseDir, p)
	}
	var out []keyFile
	for _, k := range auth.Keys {
		if k.File != "" {
			path := abs(k.File)
			data, err := os.ReadFile(path)
			if err != nil {
				return nil, fmt.Errorf("policy: key file: %w", err)
			}
			out = append(out, keyFile{id: k.ID, path: path, data: data})
			continue
		}
		dir := abs(k.Dir)
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("policy: key dir: %w", err)
		}
		var names []string
		for _, e := range entries {
			if !strings.HasPrefix(e.Name(), ".") {
				names = append(names, e.Name())
			}
		}
		sort.Strings(names)
		n := 0
		for _, name := range names {
			path := filepath.Join(dir, name)
			st, err := os.Stat(path) // follows the Secret volume's symlinks
			if err != nil {
				return nil, fmt.Errorf("policy: key dir: %w", err)
			}
			if !st.Mode().IsRegular() {
				continue
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return nil, fmt.Errorf("policy: key dir: %w", err)
			}
			id := k.ID
			if id == "" {
				id = strings.TrimSuffix(name, ".pem")
			}
			out = append(out, keyFile{id: id, path: path, data: data})
			n++
		}
		if n == 0 {
			return nil, fmt.Errorf("policy: key dir %s holds no key file", dir)
		}
	}
	return out, nil
}

// LoadKeys reads the key files of auth, resolving relative paths against
// baseDir, and returns them as verifier keys of auth.Algorithm's type.
func LoadKeys(auth Auth, baseDir string) ([]VerifierKey, error) {
	files, err := readKeyFiles(auth, baseDir)
	if err != nil {
		return nil, err
	}
	return keysFromFiles(auth.Algorithm, files)
}

// keysFromFiles decodes key file contents for alg.
func keysFromFiles(alg Algorithm, files []keyFile) ([]VerifierKey, error) {
	var out []VerifierKey
	for _, f := range files {
		if alg == HS256 {
			if err := checkKey(HS256, f.data); err != nil {
				return nil, fmt.Errorf("policy: key file %s: %w", f.path, err)
			}
			out = append(out, VerifierKey{ID: f.id, Key: f.data})
			continue
		}
		pubs, err := ParsePublicKeys(f.data)
		if err != nil {
			return nil, fmt.Errorf("policy: key file %s: %w", f.path, err)
		}
		for _, p := range pubs {
			if err := checkKey(alg, p); err != nil {
				return nil, fmt.Errorf("policy: key file %s: %w", f.path, err)
			}
			out = append(out, VerifierKey{ID: f.id, Key: p})
		}
	}
	return out, nil
}
