package resources

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/cometd-operator/cometd-operator/api/v1alpha1"
	"github.com/cometd-operator/cometd-operator/broker/config"
	"github.com/cometd-operator/cometd-operator/internal/testutil"
)

// durable sets spec.durability as the API server returns it: defaults applied.
func durable(cc *v1.CometdCluster) {
	cc.Spec.Durability = &v1.DurabilitySpec{
		Storage:         v1.StorageMemory,
		Replicas:        ptr.To[int32](1),
		MaxAge:          &metav1.Duration{Duration: 10 * time.Minute},
		MaxBytes:        ptr.To(resource.MustParse("256Mi")),
		MaxSessionBytes: ptr.To(resource.MustParse("64Ki")),
	}
}

// natsReplicasOf sets the managed NATS server count.
func natsReplicasOf(n int32) func(*v1.CometdCluster) {
	return func(cc *v1.CometdCluster) { cc.Spec.NATS.Managed.Replicas = ptr.To(n) }
}

// broker.yaml carries spec.durability as the broker/config contract: the age
// in milliseconds, the bounds in bytes; the broker accepts it. Without
// spec.durability it has none.
func TestBrokerConfigRendersDurability(t *testing.T) {
	for _, tc := range []struct {
		name string
		mut  func(*v1.CometdCluster)
		want *config.Durability
	}{
		{"unset", func(*v1.CometdCluster) {}, nil},
		{"defaults", durable, &config.Durability{Storage: "memory", Replicas: 1, MaxAgeMs: 600000,
			MaxBytes: 256 << 20, MaxSessionBytes: 64 << 10}},
		{"set", func(cc *v1.CometdCluster) {
			durable(cc)
			d := cc.Spec.Durability
			d.Storage, d.Replicas, d.MaxAge = v1.StorageFile, ptr.To[int32](3), &metav1.Duration{Duration: 90 * time.Second}
			d.MaxBytes, d.MaxSessionBytes = ptr.To(resource.MustParse("1Gi")), ptr.To(resource.MustParse("1M"))
		}, &config.Durability{Storage: "file", Replicas: 3, MaxAgeMs: 90000, MaxBytes: 1 << 30, MaxSessionBytes: 1000000}},
		{"defaults bypassed", func(cc *v1.CometdCluster) { cc.Spec.Durability = &v1.DurabilitySpec{} },
			&config.Durability{Storage: "memory", Replicas: 1, MaxAgeMs: 600000, MaxBytes: 256 << 20, MaxSessionBytes: 64 << 10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, nats := range []func(*v1.CometdCluster){func(*v1.CometdCluster) {}, managed} {
				b, err := BrokerConfig(cluster(nats, tc.mut))
				if err != nil {
					t.Fatal(err)
				}
				f, err := config.Parse(b)
				if err != nil {
					t.Fatalf("the broker would refuse the rendered config: %v\n%s", err, b)
				}
				if !equality.Semantic.DeepEqual(f.Durability, tc.want) {
					t.Fatalf("durability = %+v, want %+v\n%s", f.Durability, tc.want, b)
				}
			}
		})
	}
}

// With spec.durability the managed NATS enables JetStream, sized from
// maxBytes for the chosen storage; without it, nats.conf has no JetStream.
func TestNATSConfigJetStream(t *testing.T) {
	if c := NATSConfig(cluster(managed)); strings.Contains(c, "jetstream") {
		t.Fatalf("JetStream without spec.durability:\n%s", c)
	}
	for _, tc := range []struct {
		storage   v1.DurabilityStorage
		maxBytes  string
		mem, file int64
	}{
		{v1.StorageMemory, "256Mi", 320 << 20, 1 << 20},
		{v1.StorageFile, "256Mi", 1 << 20, 320 << 20},
		{v1.StorageMemory, "2Gi", 2560 << 20, 1 << 20},
		{v1.StorageFile, "16Mi", 1 << 20, 80 << 20},
	} {
		cc := cluster(managed, durable, func(cc *v1.CometdCluster) {
			cc.Spec.Durability.Storage = tc.storage
			cc.Spec.Durability.MaxBytes = ptr.To(resource.MustParse(tc.maxBytes))
		})
		c := NATSConfig(cc)
		want := fmt.Sprintf("jetstream {\n  store_dir: \"/data\"\n  max_memory_store: %d\n  max_file_store: %d\n}\n", tc.mem, tc.file)
		if !strings.Contains(c, want) || !strings.Contains(c, "server_name: $POD_NAME\n") {
			t.Errorf("%s %s: nats.conf lacks\n%s\nor a server name per pod:\n%s", tc.storage, tc.maxBytes, want, c)
		}
	}
}

// A lone managed NATS server with durability runs JetStream alone, without
// the cluster block (a JetStream cluster waits for a second server forever);
// several keep their cluster, named after the NATS StatefulSet, which is the
// JetStream cluster's name. Without durability nothing changes.
func TestNATSClusterBlockWithDurability(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cc      *v1.CometdCluster
		cluster bool
	}{
		{"one server", cluster(managed, natsReplicasOf(1)), true},
		{"one server, durable", cluster(managed, natsReplicasOf(1), durable), false},
		{"three servers, durable", cluster(managed, durable), true},
	} {
		auth := NATSAuthConfig(tc.cc, "t", "p")
		if got := strings.Contains(auth, "cluster {\n  name: \"chat-nats\"\n"); got != tc.cluster {
			t.Errorf("%s: cluster block %v, want %v:\n%s", tc.name, got, tc.cluster, auth)
		}
		if !strings.Contains(auth, "authorization {\n  token: \"t\"\n}\n") {
			t.Errorf("%s: no client token:\n%s", tc.name, auth)
		}
	}
}

func natsPod(t *testing.T, cc *v1.CometdCluster) corev1.PodTemplateSpec {
	t.Helper()
	return find[*appsv1.StatefulSet](t, build(t, cc, Options{}), "chat-nats").Spec.Template
}

// The NATS pods of a durable cluster get a store volume (an emptyDir with a
// size limit) at the store_dir, a memory request that leaves room for memory
// storage unless one is set, and probes that wait for JetStream to catch up.
func TestNATSPodWithDurability(t *testing.T) {
	plain := natsPod(t, cluster(managed))
	if len(plain.Spec.Volumes) != 2 || plain.Spec.Containers[0].StartupProbe != nil ||
		plain.Spec.Containers[0].ReadinessProbe.HTTPGet.Path != "/healthz" || plain.Spec.Containers[0].Resources.Requests != nil {
		t.Fatalf("a NATS pod without durability changed: %+v", plain.Spec)
	}
	for _, tc := range []struct {
		name       string
		mut        func(*v1.CometdCluster)
		volume     string
		memRequest string // "" for none
	}{
		{"memory", func(*v1.CometdCluster) {}, "256Mi", "544Mi"},
		{"file", func(cc *v1.CometdCluster) { cc.Spec.Durability.Storage = v1.StorageFile }, "896Mi", ""},
		{"memory, request set", func(cc *v1.CometdCluster) {
			cc.Spec.NATS.Managed.Resources.Requests = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("300Mi")}
		}, "256Mi", "300Mi"},
		{"memory, limit set", func(cc *v1.CometdCluster) {
			cc.Spec.NATS.Managed.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")}
		}, "256Mi", "544Mi"},
		{"memory, limit below the need", func(cc *v1.CometdCluster) {
			cc.Spec.NATS.Managed.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("400Mi")}
		}, "256Mi", "400Mi"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cc := cluster(managed, durable, tc.mut)
			pod := natsPod(t, cc)
			var vol *corev1.Volume
			for i := range pod.Spec.Volumes {
				if pod.Spec.Volumes[i].Name == "jetstream" {
					vol = &pod.Spec.Volumes[i]
				}
			}
			if vol == nil || vol.EmptyDir == nil || vol.EmptyDir.SizeLimit.Cmp(resource.MustParse(tc.volume)) != 0 {
				t.Fatalf("store volume %+v, want an emptyDir of %s", vol, tc.volume)
			}
			c := pod.Spec.Containers[0]
			if m := c.VolumeMounts[len(c.VolumeMounts)-1]; m.Name != "jetstream" || m.MountPath != "/data" || m.ReadOnly {
				t.Errorf("store mount %+v", m)
			}
			got, set := c.Resources.Requests[corev1.ResourceMemory]
			if tc.memRequest == "" && set || tc.memRequest != "" && got.Cmp(resource.MustParse(tc.memRequest)) != 0 {
				t.Errorf("memory request %v (set %v), want %q", got.String(), set, tc.memRequest)
			}
			if cc.Spec.NATS.Managed.Resources.Requests == nil && tc.memRequest == "" && c.Resources.Requests != nil {
				t.Errorf("requests set on a file store: %v", c.Resources.Requests)
			}
			if c.StartupProbe == nil || c.StartupProbe.HTTPGet.Path != "/healthz" || c.StartupProbe.FailureThreshold != 30 ||
				c.ReadinessProbe.HTTPGet.Path != "/healthz?js-server-only=true" || c.LivenessProbe.HTTPGet.Path != "/healthz?js-enabled-only=true" {
				t.Errorf("probes: startup %+v, readiness %+v, liveness %+v", c.StartupProbe, c.ReadinessProbe, c.LivenessProbe)
			}
		})
	}
	// The builder does not write into the spec it reads.
	cc := cluster(managed, durable)
	natsPod(t, cc)
	if cc.Spec.NATS.Managed.Resources.Requests != nil {
		t.Fatalf("the builder changed the CometdCluster: %v", cc.Spec.NATS.Managed.Resources)
	}
}

// The memory a NATS container needs, which the API server checks a memory
// limit against, is 1.5 × JetStream's memory storage + 64Mi.
func TestNATSMemoryForDurability(t *testing.T) {
	if got := NATSMemoryForDurability(JetStreamStore(256 << 20)); got != 544<<20 {
		t.Fatalf("defaults need %d, want 544Mi", got)
	}
	if got := JetStreamStore(1 << 20); got != 65<<20 {
		t.Fatalf("a small stream still leaves 64Mi for the session records: %d", got)
	}
}

// Changing durability rolls the brokers (their config hash), and the NATS
// servers only when what they run changes: storage and maxBytes (their
// JetStream, volume and memory), or setting spec.durability at all. The age,
// the per-session bound and the replicas are the brokers' business.
func TestDurabilityRollsNATSOnlyWhenItsConfigChanges(t *testing.T) {
	templates := func(mut ...func(*v1.CometdCluster)) (brokerHash string, nats corev1.PodTemplateSpec) {
		objs := build(t, cluster(append([]func(*v1.CometdCluster){managed, durable}, mut...)...), Options{})
		return find[*appsv1.Deployment](t, objs, "chat").Spec.Template.Annotations[AnnotationConfigHash],
			find[*appsv1.StatefulSet](t, objs, "chat-nats").Spec.Template
	}
	baseHash, baseNATS := templates()
	for _, tc := range []struct {
		name      string
		mut       func(*v1.CometdCluster)
		rollsNATS bool
	}{
		{"maxAge", func(cc *v1.CometdCluster) { cc.Spec.Durability.MaxAge.Duration = time.Hour }, false},
		{"maxSessionBytes", func(cc *v1.CometdCluster) { cc.Spec.Durability.MaxSessionBytes = ptr.To(resource.MustParse("1Mi")) }, false},
		{"replicas", func(cc *v1.CometdCluster) { cc.Spec.Durability.Replicas = ptr.To[int32](3) }, false},
		{"storage", func(cc *v1.CometdCluster) { cc.Spec.Durability.Storage = v1.StorageFile }, true},
		{"maxBytes", func(cc *v1.CometdCluster) { cc.Spec.Durability.MaxBytes = ptr.To(resource.MustParse("512Mi")) }, true},
		{"unset", func(cc *v1.CometdCluster) { cc.Spec.Durability = nil }, true},
	} {
		hash, nats := templates(tc.mut)
		if hash == baseHash {
			t.Errorf("%s: the brokers do not roll", tc.name)
		}
		if rolled := !equality.Semantic.DeepEqual(nats, baseNATS); rolled != tc.rollsNATS {
			t.Errorf("%s: NATS pod template changed %v, want %v", tc.name, rolled, tc.rollsNATS)
		}
		if changed := nats.Annotations[AnnotationConfigHash] != baseNATS.Annotations[AnnotationConfigHash]; changed != tc.rollsNATS {
			t.Errorf("%s: NATS config hash changed %v, want %v", tc.name, changed, tc.rollsNATS)
		}
	}
}

// renderedDurableNATS renders a durable cluster's nats.conf and auth.conf
// with the store_dir in a temporary directory per server, and returns the
// brokers' token and the route password.
func renderedDurableNATS(t *testing.T, cc *v1.CometdCluster) (conf func() string, auth, token, pass string) {
	t.Helper()
	objs := build(t, cc, Options{})
	c := find[*corev1.ConfigMap](t, objs, "chat-nats-config").Data["nats.conf"]
	if !strings.Contains(c, `store_dir: "/data"`) {
		t.Fatalf("no store_dir in\n%s", c)
	}
	secret := find[*corev1.Secret](t, objs, "chat-nats-auth")
	conf = func() string { return strings.Replace(c, `"/data"`, fmt.Sprintf("%q", t.TempDir()), 1) }
	return conf, string(secret.Data["auth.conf"]), string(secret.Data["token"]), string(secret.Data["route-password"])
}

// jsConnect connects to s with the brokers' token and opens JetStream.
func jsConnect(t *testing.T, s *natsserver.Server, token string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL(), nats.Token(token))
	if err != nil {
		t.Fatalf("the brokers' token is refused: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// A lone NATS server run from the rendered configuration has JetStream with
// the configured storage: the brokers (with their token) can create the
// stream of unacknowledged messages at maxBytes and a bucket of session
// records at the room left for it, and nothing more fits.
func TestRenderedNATSRunsJetStream(t *testing.T) {
	for _, storage := range []v1.DurabilityStorage{v1.StorageMemory, v1.StorageFile} {
		t.Run(string(storage), func(t *testing.T) {
			cc := cluster(managed, natsReplicasOf(1), durable, func(cc *v1.CometdCluster) {
				cc.Spec.Durability.Storage = storage
				cc.Spec.Durability.MaxBytes = ptr.To(resource.MustParse("8Mi"))
			})
			conf, auth, token, _ := renderedDurableNATS(t, cc)
			s := startRenderedNATS(t, conf(), auth)
			if !s.JetStreamEnabled() || s.JetStreamIsClustered() {
				t.Fatalf("JetStream enabled %v, clustered %v; want a lone JetStream server", s.JetStreamEnabled(), s.JetStreamIsClustered())
			}
			js := jsConnect(t, s, token)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			st := jetstream.MemoryStorage
			if storage == v1.StorageFile {
				st = jetstream.FileStorage
			}
			stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "messages", Subjects: []string{"m.>"},
				Storage: st, MaxBytes: 8 << 20})
			if err != nil {
				t.Fatalf("create the stream of %s storage at maxBytes: %v", storage, err)
			}
			if _, err := js.Publish(ctx, "m.session1", []byte("hello")); err != nil {
				t.Fatal(err)
			}
			if info, err := stream.Info(ctx); err != nil || info.State.Msgs != 1 {
				t.Fatalf("stream info %+v, %v", info, err)
			}
			kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "sessions", Storage: st, MaxBytes: 64 << 20})
			if err != nil {
				t.Fatalf("create the session records bucket in the room left: %v", err)
			}
			if _, err := kv.Put(ctx, "session1", []byte(`{"subscriptions":["/chat/**"]}`)); err != nil {
				t.Fatal(err)
			}
			_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "more", Subjects: []string{"x.>"}, Storage: st, MaxBytes: 1 << 20})
			var apiErr *jetstream.APIError
			if !errors.As(err, &apiErr) || !strings.Contains(strings.ToLower(apiErr.Description), "insufficient") {
				t.Fatalf("a stream beyond the sized storage: %v, want insufficient resources", err)
			}
		})
	}
}

// freePorts returns n free loopback TCP ports.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// Three NATS servers run from the rendered configuration of a durable
// cluster with three managed servers (routes on loopback instead of the
// pods' DNS names, with the rendered route password) form a JetStream
// cluster, named after the NATS StatefulSet. A stream and a bucket with
// three replicas take writes, and keep taking them when the stream's leader
// is gone.
func TestRenderedNATSFormsJetStreamCluster(t *testing.T) {
	cc := cluster(managed, durable, func(cc *v1.CometdCluster) { cc.Spec.Durability.Replicas = ptr.To[int32](3) })
	conf, auth, token, pass := renderedDurableNATS(t, cc)
	ports := freePorts(t, 3)
	var routes []*url.URL
	for _, p := range ports {
		routes = append(routes, &url.URL{Scheme: "nats", User: url.UserPassword("route", pass), Host: fmt.Sprintf("127.0.0.1:%d", p)})
	}
	servers := make([]*natsserver.Server, 3)
	for i, p := range ports {
		servers[i] = startRenderedNATSWith(t, conf(), auth, func(o *natsserver.Options) {
			o.Cluster.Host, o.Cluster.Port = "127.0.0.1", p
			o.Routes = routes // every server, itself included, as rendered
		})
	}
	testutil.Eventually(t, 30*time.Second, "a JetStream cluster of three", func(context.Context) (bool, string) {
		var leaders, peers []string
		for _, s := range servers {
			if !s.JetStreamIsClustered() {
				return false, s.Name() + " is not clustered"
			}
			if s.JetStreamIsLeader() {
				leaders = append(leaders, s.Name())
			}
			if cl := s.JetStreamClusterPeers(); len(cl) > len(peers) {
				peers = cl
			}
		}
		return len(leaders) == 1 && len(peers) == 3, fmt.Sprintf("meta leaders %v, peers %v", leaders, peers)
	})
	if name := servers[0].ClusterName(); name != "chat-nats" {
		t.Fatalf("JetStream cluster name %q, want chat-nats", name)
	}

	js := jsConnect(t, servers[0], token)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "messages", Subjects: []string{"m.>"},
		Storage: jetstream.MemoryStorage, Replicas: 3, MaxBytes: 256 << 20})
	if err != nil {
		t.Fatalf("create a stream of three replicas at maxBytes: %v", err)
	}
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "sessions", Storage: jetstream.MemoryStorage,
		Replicas: 3, MaxBytes: 64 << 20}); err != nil {
		t.Fatalf("create the session records bucket with three replicas: %v", err)
	}
	if _, err := js.Publish(ctx, "m.session1", []byte("one")); err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("stream cluster info %+v, %v; want a leader and two replicas", info, err)
	}

	// Lose the stream's leader; the others carry on.
	var rest []*natsserver.Server
	for _, s := range servers {
		if s.Name() == info.Cluster.Leader {
			s.Shutdown()
		} else {
			rest = append(rest, s)
		}
	}
	if len(rest) != 2 {
		t.Fatalf("no server is the stream leader %q", info.Cluster.Leader)
	}
	js = jsConnect(t, rest[0], token)
	testutil.Eventually(t, 30*time.Second, "a write after the leader's loss", func(ctx context.Context) (bool, string) {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if _, err := js.Publish(ctx, "m.session1", []byte("two")); err != nil {
			return false, err.Error()
		}
		s, err := js.Stream(ctx, "messages")
		if err != nil {
			return false, err.Error()
		}
		i, err := s.Info(ctx)
		if err != nil {
			return false, err.Error()
		}
		return i.State.Msgs >= 2, fmt.Sprintf("%d messages", i.State.Msgs)
	})
}
