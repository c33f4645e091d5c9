// Package testenv starts a real control plane (kube-apiserver + etcd, built from
// source by hack/envtest-assets.sh) with the project's CRDs installed, for tests.
package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	cometdv1alpha1 "github.com/cometd-operator/cometd-operator/api/v1alpha1"
)

// Env is a running control plane.
type Env struct {
	Config *rest.Config
	Client client.Client
	Scheme *runtime.Scheme
	env    *envtest.Environment
}

// RepoRoot returns the module's root directory.
func RepoRoot() string {
	_, file, _, _ := goruntime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Options adjust the control plane StartWith runs.
type Options struct {
	// APIServerFlags are extra kube-apiserver flags, by name without the
	// dashes ("service-cluster-ip-range": "10.0.0.0/16"); they replace
	// envtest's defaults of the same name.
	APIServerFlags map[string]string
}

// Start starts kube-apiserver and etcd from KUBEBUILDER_ASSETS and installs the
// CRDs in config/crd/bases. It fails, rather than skips, when the assets are
// missing: `make test` builds them.
func Start() (*Env, error) { return StartWith(Options{}) }

// StartWith is Start with o's adjustments.
func StartWith(o Options) (*Env, error) {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		return nil, fmt.Errorf("KUBEBUILDER_ASSETS is not set: run the tests with `make test` " +
			"(it builds kube-apiserver and etcd into bin/k8s with hack/envtest-assets.sh)")
	}
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(assets, bin)); err != nil {
			return nil, fmt.Errorf("envtest asset %s missing in %s: run `make envtest-assets`: %w", bin, assets, err)
		}
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := cometdv1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join(RepoRoot(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		Scheme:                scheme,
	}
	for name, value := range o.APIServerFlags {
		env.ControlPlane.GetAPIServer().Configure().Set(name, value)
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("start envtest control plane: %w", err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		_ = env.Stop()
		return nil, err
	}
	return &Env{Config: cfg, Client: c, Scheme: scheme, env: env}, nil
}

// KubeConfigFor returns a kubeconfig for a new user of the control plane,
// authenticated by a client certificate, with no permissions beyond what its
// groups grant: for running a process under the RBAC rules it would have in a
// cluster.
func (e *Env) KubeConfigFor(user string, groups ...string) ([]byte, error) {
	u, err := e.env.AddUser(envtest.User{Name: user, Groups: groups}, nil)
	if err != nil {
		return nil, fmt.Errorf("add user %s: %w", user, err)
	}
	return u.KubeConfig()
}

// Stop stops the control plane.
func (e *Env) Stop() error { return e.env.Stop() }

// GVR is a convenience for the CometdCluster resource.
var GVR = schema.GroupVersionResource{Group: cometdv1alpha1.GroupVersion.Group,
	Version: cometdv1alpha1.GroupVersion.Version, Resource: "cometdclusters"}

// RunMain is the body of a TestMain for a package whose tests all share one
// control plane: it starts it into *env, runs the tests, stops it and returns
// the exit code. Use it as `os.Exit(testenv.RunMain(m, &env))`.
func RunMain(m interface{ Run() int }, env **Env) int {
	e, err := Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	*env = e
	defer func() {
		if err := e.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop envtest:", err)
		}
	}()
	return m.Run()
}
