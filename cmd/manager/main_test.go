package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	v1 "github.com/cometd-operator/cometd-operator/api/v1alpha1"
	"github.com/cometd-operator/cometd-operator/internal/testenv"
)

// runMainEnv makes the test binary run the manager's main instead of the
// tests, so that the test can start the real command as a child process.
const runMainEnv = "COMETD_MANAGER_TEST_RUN_MAIN"

var env *testenv.Env

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	var err error
	if env, err = testenv.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	if err := env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stop envtest:", err)
	}
	os.Exit(code)
}

// lockedBuffer collects a child process's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// loadRBAC reads one object of config/rbac.
func loadRBAC(t *testing.T, file string, obj client.Object) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "rbac", file))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, obj); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// The manager command, run as its own process with only the RBAC rules of
// config/rbac (the generated role and the leader-election role), elects
// itself leader, serves its probes, reconciles, logs JSON, and exits cleanly
// on SIGTERM.
func TestManagerRunsWithItsOwnRBAC(t *testing.T) {
	ctx := context.Background()
	c := env.Client
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "manager-test-"}}
	if err := c.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(ctx, ns) })

	const user = "cometd-operator-under-test"
	subject := []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}
	role := &rbacv1.ClusterRole{}
	loadRBAC(t, "role.yaml", role)
	role.Name = "manager-test-" + ns.Name
	leRole := &rbacv1.Role{}
	loadRBAC(t, "leader_election_role.yaml", leRole)
	leRole.Namespace = ns.Name
	for _, o := range []client.Object{
		role,
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: role.Name}, Subjects: subject,
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name}},
		leRole,
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "leader-election", Namespace: ns.Name}, Subjects: subject,
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: leRole.Name}},
	} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatalf("create %s: %v", o.GetName(), err)
		}
	}
	t.Cleanup(func() { _ = c.Delete(ctx, role) })

	kubeconfig, err := env.KubeConfigFor(user)
	if err != nil {
		t.Fatal(err)
	}
	kcPath := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kcPath, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}

	probes := freeAddr(t)
	cmdCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cmdCtx, os.Args[0],
		"--leader-elect", "--leader-election-namespace="+ns.Name,
		"--metrics-bind-address=0", "--health-probe-bind-address="+probes,
		"--broker-image=example.com/broker:under-test")
	cmd.Env = append(os.Environ(), runMainEnv+"=1", "KUBECONFIG="+kcPath)
	var logs lockedBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("manager output:\n%s", logs.String())
		}
	})

	wait := func(what string, cond func() (bool, string)) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			ok, why := cond()
			if ok {
				return
			}
			select {
			case err := <-exited:
				stopped = true
				t.Fatalf("manager exited while waiting for %s: %v", what, err)
			case <-tick.C:
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s: %s", what, why)
			}
		}
	}
	wait("readyz", func() (bool, string) {
		resp, err := http.Get("http://" + probes + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})

	cc := &v1.CometdCluster{ObjectMeta: metav1.ObjectMeta{Name: "chat", Namespace: ns.Name},
		Spec: v1.CometdClusterSpec{Replicas: ptr.To[int32](2), NATS: &v1.NATSSpec{Managed: &v1.ManagedNATS{}}}}
	if err := c.Create(ctx, cc); err != nil {
		t.Fatal(err)
	}
	pol := &v1.ChannelPolicy{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: ns.Name},
		Spec: v1.ChannelPolicySpec{ClusterName: "chat", Rules: []v1.ChannelRule{{Name: "r", Effect: v1.EffectAllow,
			Actions: []v1.PolicyAction{v1.ActionSubscribe}, Channels: []v1.ChannelPattern{"/chat/*"}, Principals: []v1.Principal{"*"}}}}}
	if err := c.Create(ctx, pol); err != nil {
		t.Fatal(err)
	}
	wait("the broker Deployment", func() (bool, string) {
		d := &appsv1.Deployment{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns.Name, Name: "chat"}, d); err != nil {
			return false, err.Error()
		}
		img := d.Spec.Template.Spec.Containers[0].Image
		return img == "example.com/broker:under-test", "image " + img
	})
	wait("the managed NATS StatefulSet", func() (bool, string) {
		err := c.Get(ctx, client.ObjectKey{Namespace: ns.Name, Name: "chat-nats"}, &appsv1.StatefulSet{})
		return err == nil, fmt.Sprint(err)
	})
	wait("status with a policy version", func() (bool, string) {
		got := &v1.CometdCluster{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(cc), got); err != nil {
			return false, err.Error()
		}
		return got.Status.PolicyVersion != "" && meta.FindStatusCondition(got.Status.Conditions, v1.ConditionAvailable) != nil,
			fmt.Sprintf("%+v", got.Status)
	})
	wait("the policy Accepted", func() (bool, string) {
		got := &v1.ChannelPolicy{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(pol), got); err != nil {
			return false, err.Error()
		}
		return meta.IsStatusConditionTrue(got.Status.Conditions, v1.ConditionAccepted), fmt.Sprintf("%+v", got.Status)
	})
	wait("a held leader-election Lease", func() (bool, string) {
		lease := &coordinationv1.Lease{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns.Name, Name: "cometd-operator.cometd.bayeux.dev"}, lease); err != nil {
			return false, err.Error()
		}
		return ptr.Deref(lease.Spec.HolderIdentity, "") != "", "no holder"
	})

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Fatalf("manager exited with %v after SIGTERM", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("manager did not exit within 20 s of SIGTERM")
	}

	// Structured logs: every line is a JSON object with a message, and no
	// line reports a permission error.
	sc := bufio.NewScanner(strings.NewReader(logs.String()))
	lines := 0
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Errorf("log line is not JSON: %q", sc.Text())
			continue
		}
		if _, ok := rec["msg"]; !ok {
			t.Errorf("log line without msg: %q", sc.Text())
		}
		if strings.Contains(sc.Text(), "forbidden") {
			t.Errorf("the manager lacks a permission: %s", sc.Text())
		}
		lines++
	}
	if lines == 0 {
		t.Error("the manager logged nothing")
	}
}
