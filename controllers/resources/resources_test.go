package resources

import (
	"maps"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/cometd-operator/cometd-operator/api/v1alpha1"
	"github.com/cometd-operator/cometd-operator/broker/config"
)

func testScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := v1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

// cluster is a CometdCluster as the API server returns it: defaults applied.
func cluster(mut ...func(*v1.CometdCluster)) *v1.CometdCluster {
	cc := &v1.CometdCluster{
		ObjectMeta: metav1.ObjectMeta{Name: "chat", Namespace: "ns1", UID: "uid-1"},
		Spec: v1.CometdClusterSpec{
			Replicas:        ptr.To[int32](3),
			ImagePullPolicy: corev1.PullIfNotPresent,
			Broker: v1.BrokerSettings{
				Timeout:        &metav1.Duration{Duration: 30 * time.Second},
				Interval:       &metav1.Duration{},
				MaxInterval:    &metav1.Duration{Duration: 10 * time.Second},
				MaxQueue:       ptr.To[int32](-1),
				MaxQueueSize:   ptr.To(resource.MustParse("4Mi")),
				MaxMessageSize: ptr.To(resource.MustParse("64Ki")),
				Transports:     []v1.Transport{v1.TransportWebsocket, v1.TransportLongPolling, v1.TransportCallbackPolling},
			},
			NATS:             &v1.NATSSpec{URL: "nats://nats.infra:4222"},
			Service:          v1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, Port: 80},
			Pod:              v1.PodOverrides{TerminationGracePeriodSeconds: ptr.To[int64](30)},
			DisruptionBudget: v1.DisruptionBudgetSpec{MaxUnavailable: ptr.To(intstr.FromInt32(1))},
		},
	}
	for _, m := range mut {
		m(cc)
	}
	return cc
}

func managed(cc *v1.CometdCluster) {
	cc.Spec.NATS = &v1.NATSSpec{Managed: &v1.ManagedNATS{Replicas: ptr.To[int32](3), Cluster: v1.NATSClusterRoutes{Port: 6222}}}
}

// build runs every builder on a fresh object, as a create would.
func build(t *testing.T, cc *v1.CometdCluster, opts Options) []client.Object {
	t.Helper()
	bs, err := Builders(cc, opts, testScheme(t), []byte(`{"policy":1}`))
	if err != nil {
		t.Fatalf("Builders: %v", err)
	}
	var objs []client.Object
	for _, b := range bs {
		o := b.Build()
		if err := b.Update(o); err != nil {
			t.Fatalf("Update %T: %v", o, err)
		}
		objs = append(objs, o)
	}
	return objs
}

func find[T client.Object](t *testing.T, objs []client.Object, name string) T {
	t.Helper()
	for _, o := range objs {
		if x, ok := o.(T); ok && o.GetName() == name {
			return x
		}
	}
	var zero T
	t.Fatalf("no %T named %s among the children", zero, name)
	return zero
}

func TestBuildersNamesOrderAndOwners(t *testing.T) {
	for _, tc := range []struct {
		name string
		cc   *v1.CometdCluster
		want []string
	}{
		{"external nats", cluster(), []string{
			"ConfigMap/chat-config", "ConfigMap/chat-policy", "Service/chat-headless", "Service/chat", "Deployment/chat", "PodDisruptionBudget/chat"}},
		{"managed nats", cluster(managed), []string{
			"Secret/chat-nats-auth", "ConfigMap/chat-nats-config", "Service/chat-nats-headless", "Service/chat-nats", "StatefulSet/chat-nats",
			"NetworkPolicy/chat-nats",
			"ConfigMap/chat-config", "ConfigMap/chat-policy", "Service/chat-headless", "Service/chat", "Deployment/chat", "PodDisruptionBudget/chat"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := build(t, tc.cc, Options{})
			var got []string
			for _, o := range objs {
				kind := strings.Split(typeName(o), ".")[1]
				got = append(got, kind+"/"+o.GetName())
				if o.GetNamespace() != "ns1" {
					t.Errorf("%s in namespace %q, want ns1", o.GetName(), o.GetNamespace())
				}
				refs := o.GetOwnerReferences()
				if len(refs) != 1 || refs[0].UID != "uid-1" || refs[0].Kind != "CometdCluster" ||
					refs[0].Controller == nil || !*refs[0].Controller {
					t.Errorf("%s owner references = %+v, want the cluster as controller", o.GetName(), refs)
				}
				if o.GetLabels()[LabelInstance] != "chat" || o.GetLabels()[LabelManagedBy] != ManagedBy {
					t.Errorf("%s labels = %v", o.GetName(), o.GetLabels())
				}
			}
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Fatalf("children = %v\nwant       %v", got, tc.want)
			}
		})
	}
}

func typeName(o client.Object) string {
	switch o.(type) {
	case *corev1.ConfigMap:
		return "*v1.ConfigMap"
	case *corev1.Service:
		return "*v1.Service"
	case *appsv1.Deployment:
		return "*v1.Deployment"
	case *appsv1.StatefulSet:
		return "*v1.StatefulSet"
	case *policyv1.PodDisruptionBudget:
		return "*v1.PodDisruptionBudget"
	case *autoscalingv2.HorizontalPodAutoscaler:
		return "*v2.HorizontalPodAutoscaler"
	case *corev1.Secret:
		return "*v1.Secret"
	case *networkingv1.NetworkPolicy:
		return "*v1.NetworkPolicy"
	}
	return "*unknown.unknown"
}

func TestObsoleteOnlyWithoutManagedNATS(t *testing.T) {
	names := func(objs []client.Object) string {
		var out []string
		for _, o := range objs {
			out = append(out, typeName(o)+" "+o.GetName())
		}
		return strings.Join(out, ",")
	}
	if got := names(Obsolete(cluster(managed, cpuAutoscaled))); got != "" {
		t.Fatalf("managed NATS, CPU autoscaling: obsolete = %s, want none", got)
	}
	if got := names(Obsolete(cluster(managed))); got != "*v2.HorizontalPodAutoscaler chat" {
		t.Fatalf("managed NATS, no CPU autoscaling: obsolete = %s, want the HPA", got)
	}
	if got := names(Obsolete(cluster(cpuAutoscaled))); got != "*v1.StatefulSet chat-nats,*v1.Service chat-nats,*v1.Service chat-nats-headless,*v1.ConfigMap chat-nats-config,*v1.Secret chat-nats-auth,*v1.NetworkPolicy chat-nats" {
		t.Fatalf("obsolete = %v", got)
	}
}

func cpuAutoscaled(cc *v1.CometdCluster) {
	cc.Spec.Autoscaling = &v1.AutoscalingSpec{MinReplicas: ptr.To[int32](2), MaxReplicas: 6, Metric: v1.MetricCPU,
		TargetCPUUtilizationPercentage: ptr.To[int32](70)}
}

// With metric cpu the cluster gets an HPA aimed at its scale subresource,
// with its bounds, target and behavior; with metric sessions none.
func TestHPA(t *testing.T) {
	cc := cluster(cpuAutoscaled, func(cc *v1.CometdCluster) {
		cc.Spec.Autoscaling.Behavior = &v1.AutoscalingBehavior{ScaleDown: &v1.ScalingRules{
			StabilizationWindowSeconds: ptr.To[int32](60), PeriodSeconds: ptr.To[int32](30), Pods: ptr.To[int32](1), Percent: ptr.To[int32](10)}}
	})
	hpa := find[*autoscalingv2.HorizontalPodAutoscaler](t, build(t, cc, Options{}), "chat")
	s := hpa.Spec
	if s.ScaleTargetRef != (autoscalingv2.CrossVersionObjectReference{APIVersion: "cometd.bayeux.dev/v1alpha1", Kind: "CometdCluster", Name: "chat"}) {
		t.Errorf("target %+v", s.ScaleTargetRef)
	}
	if *s.MinReplicas != 2 || s.MaxReplicas != 6 || len(s.Metrics) != 1 || *s.Metrics[0].Resource.Target.AverageUtilization != 70 ||
		s.Metrics[0].Resource.Name != corev1.ResourceCPU {
		t.Errorf("spec %+v", s)
	}
	down := s.Behavior.ScaleDown
	if s.Behavior.ScaleUp != nil || *down.StabilizationWindowSeconds != 60 || len(down.Policies) != 2 ||
		down.Policies[0] != (autoscalingv2.HPAScalingPolicy{Type: autoscalingv2.PodsScalingPolicy, Value: 1, PeriodSeconds: 30}) ||
		down.Policies[1] != (autoscalingv2.HPAScalingPolicy{Type: autoscalingv2.PercentScalingPolicy, Value: 10, PeriodSeconds: 30}) ||
		*down.SelectPolicy != autoscalingv2.MaxChangePolicySelect {
		t.Errorf("behavior %+v", s.Behavior)
	}
	if !metav1.IsControlledBy(hpa, cc) {
		t.Error("the HPA is not controlled by the cluster")
	}
	sessions := cluster(func(cc *v1.CometdCluster) {
		cc.Spec.Autoscaling = &v1.AutoscalingSpec{MaxReplicas: 6, Metric: v1.MetricSessions, TargetSessionsPerPod: ptr.To[int32](100)}
	})
	for _, o := range build(t, sessions, Options{}) {
		if _, ok := o.(*autoscalingv2.HorizontalPodAutoscaler); ok {
			t.Fatal("metric sessions built an HPA")
		}
	}
}

func TestDeploymentPodSpec(t *testing.T) {
	cc := cluster(func(cc *v1.CometdCluster) {
		cc.Spec.NATS.CredentialsSecret = &v1.SecretKeyRef{Name: "creds", Key: "user.creds"}
		cc.Spec.Pod.Labels = map[string]string{"team": "chat"}
		cc.Spec.Pod.Annotations = map[string]string{"a": "b"}
		cc.Spec.Pod.Tolerations = []corev1.Toleration{{Key: "k", Operator: corev1.TolerationOpExists}}
		cc.Spec.Pod.PriorityClassName = "high"
	})
	d := find[*appsv1.Deployment](t, build(t, cc, Options{BrokerImage: "reg/broker:1"}), "chat")
	if *d.Spec.Replicas != 3 {
		t.Errorf("replicas = %d, want 3", *d.Spec.Replicas)
	}
	if d.Spec.Selector.MatchLabels[LabelName] != AppBroker || len(d.Spec.Selector.MatchLabels) != 2 {
		t.Errorf("selector = %v, want name+instance only", d.Spec.Selector.MatchLabels)
	}
	tpl := d.Spec.Template
	if tpl.Labels["team"] != "chat" || tpl.Labels[LabelInstance] != "chat" {
		t.Errorf("pod labels = %v", tpl.Labels)
	}
	if tpl.Annotations["a"] != "b" || len(tpl.Annotations[AnnotationConfigHash]) != 16 {
		t.Errorf("pod annotations = %v, want user's plus a config hash", tpl.Annotations)
	}
	c := tpl.Spec.Containers[0]
	if c.Image != "reg/broker:1" {
		t.Errorf("image = %q, want the operator default", c.Image)
	}
	if strings.Join(c.Args, " ") != "--config /etc/cometd/config/broker.yaml --log-format json" {
		t.Errorf("args = %v", c.Args)
	}
	for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Port.StrVal != AdminPortName {
			t.Fatalf("probe %+v is not on the admin port", p)
		}
	}
	if c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("probe paths = %s, %s", c.ReadinessProbe.HTTPGet.Path, c.LivenessProbe.HTTPGet.Path)
	}
	var podName bool
	for _, e := range c.Env {
		if e.Name == "POD_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name" {
			podName = true
		}
	}
	if !podName {
		t.Errorf("env %v lacks POD_NAME from the downward API", c.Env)
	}
	var creds bool
	for _, m := range c.VolumeMounts {
		creds = creds || m.MountPath == NATSCredsDir
	}
	if !creds || len(tpl.Spec.Volumes) != 3 || tpl.Spec.Volumes[2].Secret.SecretName != "creds" {
		t.Errorf("NATS credentials not mounted: volumes %+v", tpl.Spec.Volumes)
	}
	if tpl.Spec.PriorityClassName != "high" || len(tpl.Spec.Tolerations) != 1 || *tpl.Spec.TerminationGracePeriodSeconds != 30 {
		t.Errorf("pod overrides not applied: %+v", tpl.Spec)
	}
	if tpl.Spec.SecurityContext == nil || !*tpl.Spec.SecurityContext.RunAsNonRoot {
		t.Errorf("default pod security context missing")
	}
}

func TestBrokerConfigRendersSpec(t *testing.T) {
	cc := cluster(func(cc *v1.CometdCluster) {
		cc.Spec.Broker.Timeout.Duration = 25 * time.Second
		cc.Spec.Broker.MaxQueue = ptr.To[int32](500)
		cc.Spec.Broker.MaxSessions = ptr.To[int32](20000)
		cc.Spec.Broker.MaxMessageSize = ptr.To(resource.MustParse("128Ki"))
		cc.Spec.Broker.Transports = []v1.Transport{v1.TransportWebsocket, v1.TransportEventSource}
		cc.Spec.Broker.AllowedOrigins = []string{"https://app.example.com"}
		cc.Spec.Broker.Demo = true
		cc.Spec.NATS.CredentialsSecret = &v1.SecretKeyRef{Name: "creds"}
		cc.Spec.Pod.TerminationGracePeriodSeconds = ptr.To[int64](60)
	})
	b, err := BrokerConfig(cc)
	if err != nil {
		t.Fatal(err)
	}
	f, err := config.Parse(b) // what the broker will do with it
	if err != nil {
		t.Fatalf("the broker would refuse the rendered config: %v\n%s", err, b)
	}
	want := config.File{
		Cluster: "ns1/chat", Listen: ":8080", AdminListen: ":8081", MountPath: "/cometd",
		TimeoutMs: 25000, MaxIntervalMs: 10000, MaxQueue: 500, MaxQueueBytes: 4 << 20, MaxMessageSize: 128 << 10,
		MaxSessions: 20000, Transports: []string{"websocket", "eventsource"}, AllowedOrigins: []string{"https://app.example.com"},
		Demo: true, DrainGracePeriodMs: 55000, PolicyFile: "/etc/cometd/policy/policy.json",
		NATS: config.NATS{URL: "nats://nats.infra:4222", CredsFile: "/etc/cometd/nats/nats.creds"},
	}
	if !equality.Semantic.DeepEqual(*f, want) {
		t.Fatalf("rendered config = %+v\nwant %+v", *f, want)
	}

	m, err := BrokerConfig(cluster(managed))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(m), "url: nats://chat-nats.ns1.svc:4222") {
		t.Fatalf("managed mode config does not point at the managed NATS:\n%s", m)
	}
}

// The config hash changes with broker settings (rolling the pods) and only with them.
func TestConfigHashFollowsSettings(t *testing.T) {
	hash := func(cc *v1.CometdCluster) string {
		d := find[*appsv1.Deployment](t, build(t, cc, Options{}), "chat")
		return d.Spec.Template.Annotations[AnnotationConfigHash]
	}
	base := hash(cluster())
	for _, tc := range []struct {
		name    string
		mut     func(*v1.CometdCluster)
		changes bool
	}{
		{"timeout", func(cc *v1.CometdCluster) { cc.Spec.Broker.Timeout.Duration = time.Minute }, true},
		{"transports", func(cc *v1.CometdCluster) { cc.Spec.Broker.Transports = []v1.Transport{"websocket"} }, true},
		{"maxSessions", func(cc *v1.CometdCluster) { cc.Spec.Broker.MaxSessions = ptr.To[int32](100) }, true},
		{"nats url", func(cc *v1.CometdCluster) { cc.Spec.NATS.URL = "nats://other:4222" }, true},
		{"replicas", func(cc *v1.CometdCluster) { cc.Spec.Replicas = ptr.To[int32](7) }, false},
		{"service port", func(cc *v1.CometdCluster) { cc.Spec.Service.Port = 8080 }, false},
	} {
		if got := hash(cluster(tc.mut)); (got != base) != tc.changes {
			t.Errorf("%s: hash %s vs %s, want changed=%v", tc.name, got, base, tc.changes)
		}
	}
}

// Updating an object that is already as desired changes nothing, including
// after the API server has defaulted and allocated fields; removing a field
// from the spec, or editing an owned field by hand, is corrected.
func TestUpdateIsIdempotentAndCorrectsDrift(t *testing.T) {
	s := testScheme(t)
	cc := cluster(managed, func(cc *v1.CometdCluster) {
		cc.Spec.Service.Type = corev1.ServiceTypeLoadBalancer
		cc.Spec.Pod.Tolerations = []corev1.Toleration{{Key: "k", Operator: corev1.TolerationOpExists}}
	})
	bs, err := Builders(cc, Options{}, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bs {
		obj := b.Build()
		if err := b.Update(obj); err != nil {
			t.Fatal(err)
		}
		serverDefaults(obj)
		before := obj.DeepCopyObject()
		if err := b.Update(obj); err != nil {
			t.Fatal(err)
		}
		if !equality.Semantic.DeepEqual(before, obj) {
			t.Errorf("%T %s changed on a no-op update", obj, obj.GetName())
		}
	}

	// Hand edit of an owned field.
	d := find[*appsv1.Deployment](t, build(t, cc, Options{}), "chat")
	serverDefaults(d)
	d.Spec.Template.Spec.Containers[0].Image = "evil:latest"
	bs, _ = Builders(cc, Options{}, s, nil)
	if err := builderOf(t, bs, d).Update(d); err != nil {
		t.Fatal(err)
	}
	if d.Spec.Template.Spec.Containers[0].Image != DefaultBrokerImage {
		t.Errorf("hand-edited image not restored: %s", d.Spec.Template.Spec.Containers[0].Image)
	}
	// Removing the toleration from the spec removes it from the Deployment.
	cc.Spec.Pod.Tolerations = nil
	bs, _ = Builders(cc, Options{}, s, nil)
	if err := builderOf(t, bs, d).Update(d); err != nil {
		t.Fatal(err)
	}
	if len(d.Spec.Template.Spec.Tolerations) != 0 {
		t.Errorf("removed toleration still present: %v", d.Spec.Template.Spec.Tolerations)
	}
	if d.Spec.RevisionHistoryLimit != nil {
		t.Errorf("a replaced spec keeps no stale defaults (the API server re-defaults)")
	}
}

// serverDefaults mimics what the API server does to a created object.
func serverDefaults(obj client.Object) {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		o.Spec.RevisionHistoryLimit = ptr.To[int32](10)
		o.Spec.ProgressDeadlineSeconds = ptr.To[int32](600)
		o.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyAlways
		o.Spec.Template.Spec.DNSPolicy = corev1.DNSClusterFirst
		o.Spec.Template.Spec.SchedulerName = "default-scheduler"
		c := &o.Spec.Template.Spec.Containers[0]
		c.TerminationMessagePath = "/dev/termination-log"
		c.TerminationMessagePolicy = corev1.TerminationMessageReadFile
		o.Spec.Template.Spec.Volumes[0].ConfigMap.DefaultMode = ptr.To[int32](0o644)
		o.Status.Replicas = 3
	case *appsv1.StatefulSet:
		o.Spec.RevisionHistoryLimit = ptr.To[int32](10)
		o.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateStatefulSetStrategy{Partition: ptr.To[int32](0)}
		o.Spec.PersistentVolumeClaimRetentionPolicy = &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{
			WhenDeleted: appsv1.RetainPersistentVolumeClaimRetentionPolicyType, WhenScaled: appsv1.RetainPersistentVolumeClaimRetentionPolicyType}
	case *corev1.Service:
		if o.Spec.ClusterIP == "" {
			o.Spec.ClusterIP = "10.0.0.7"
			o.Spec.ClusterIPs = []string{"10.0.0.7"}
		}
		o.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol}
		o.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicySingleStack)
		o.Spec.SessionAffinity = corev1.ServiceAffinityNone
		o.Spec.InternalTrafficPolicy = ptr.To(corev1.ServiceInternalTrafficPolicyCluster)
		if o.Spec.Type == corev1.ServiceTypeLoadBalancer {
			o.Spec.Ports[0].NodePort = 31234
			o.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
			o.Spec.AllocateLoadBalancerNodePorts = ptr.To(true)
		}
	case *policyv1.PodDisruptionBudget:
		o.Status.DesiredHealthy = 2
	}
	o := obj
	o.SetResourceVersion("42")
	o.SetCreationTimestamp(metav1.Now())
}

// builderOf is the builder of obj's kind and name.
func builderOf(t *testing.T, bs []Builder, obj client.Object) Builder {
	t.Helper()
	for _, b := range bs {
		if o := b.Build(); typeName(o) == typeName(obj) && o.GetName() == obj.GetName() {
			return b
		}
	}
	t.Fatalf("no builder of %s %s", typeName(obj), obj.GetName())
	return nil
}

func TestServiceKeepsAllocatedValuesOnChange(t *testing.T) {
	cc := cluster(func(cc *v1.CometdCluster) { cc.Spec.Service.Type = corev1.ServiceTypeNodePort })
	svc := find[*corev1.Service](t, build(t, cc, Options{}), "chat")
	serverDefaults(svc)
	svc.Spec.Ports[0].NodePort = 30080
	cc.Spec.Service.Port = 8080 // a real change
	bs, _ := Builders(cc, Options{}, testScheme(t), nil)
	if err := bs[3].Update(svc); err != nil {
		t.Fatal(err)
	}
	if svc.Spec.Ports[0].Port != 8080 || svc.Spec.Ports[0].NodePort != 30080 || svc.Spec.ClusterIP != "10.0.0.7" {
		t.Fatalf("service after change = %+v, want new port, same node port and cluster IP", svc.Spec)
	}
}

func TestHeadlessServices(t *testing.T) {
	objs := build(t, cluster(managed), Options{})
	for _, name := range []string{"chat-headless", "chat-nats-headless"} {
		if svc := find[*corev1.Service](t, objs, name); svc.Spec.ClusterIP != corev1.ClusterIPNone {
			t.Errorf("%s clusterIP = %q, want None", name, svc.Spec.ClusterIP)
		}
	}
	if !find[*corev1.Service](t, objs, "chat-nats-headless").Spec.PublishNotReadyAddresses {
		t.Error("NATS peers must be published before they are ready, so routes can form")
	}
}

func TestManagedNATS(t *testing.T) {
	cc := cluster(managed, func(cc *v1.CometdCluster) {
		cc.Spec.NATS.Managed.Replicas = ptr.To[int32](5)
		cc.Spec.NATS.Managed.Cluster.Port = 7222
	})
	objs := build(t, cc, Options{NATSImage: "nats:test"})
	sts := find[*appsv1.StatefulSet](t, objs, "chat-nats")
	if *sts.Spec.Replicas != 5 || sts.Spec.ServiceName != "chat-nats-headless" ||
		sts.Spec.Template.Spec.Containers[0].Image != "nats:test" {
		t.Errorf("statefulset = replicas %d, service %s, image %s", *sts.Spec.Replicas, sts.Spec.ServiceName,
			sts.Spec.Template.Spec.Containers[0].Image)
	}
	secret := find[*corev1.Secret](t, objs, "chat-nats-auth")
	conf := string(secret.Data["auth.conf"])
	pass := string(secret.Data["route-password"])
	for i := range 5 {
		route := "nats://route:" + pass + "@chat-nats-" + string(rune('0'+i)) + ".chat-nats-headless.ns1.svc:7222"
		if !strings.Contains(conf, route) {
			t.Errorf("auth.conf lacks route %s:\n%s", route, conf)
		}
	}
	if strings.Count(conf, "nats://") != 5 {
		t.Errorf("auth.conf has %d routes, want 5", strings.Count(conf, "nats://"))
	}
	if cm := find[*corev1.ConfigMap](t, objs, "chat-nats-config").Data["nats.conf"]; strings.Contains(cm, pass) ||
		strings.Contains(cm, string(secret.Data["token"])) || !strings.Contains(cm, `include "../auth/auth.conf"`) {
		t.Errorf("nats.conf must include auth.conf and hold no secret:\n%s", cm)
	}
}

// The managed NATS auth Secret is generated once: its token and route
// password are long random hex, differ between clusters, survive updates,
// and a malformed one is replaced.
func TestNATSAuthSecret(t *testing.T) {
	a := find[*corev1.Secret](t, build(t, cluster(managed), Options{}), "chat-nats-auth")
	b := find[*corev1.Secret](t, build(t, cluster(managed), Options{}), "chat-nats-auth")
	tok, pass := string(a.Data["token"]), string(a.Data["route-password"])
	if len(tok) != 64 || len(pass) != 64 || tok == pass || tok == string(b.Data["token"]) {
		t.Fatalf("secrets not random and long: %q %q (other cluster %q)", tok, pass, b.Data["token"])
	}
	cc := cluster(managed, func(cc *v1.CometdCluster) { cc.Spec.NATS.Managed.Replicas = ptr.To[int32](5) })
	bs, err := Builders(cc, Options{}, testScheme(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	a.Data["route-password"] = []byte("short")
	if err := builderOf(t, bs, a).Update(a); err != nil {
		t.Fatal(err)
	}
	if string(a.Data["token"]) != tok || len(a.Data["route-password"]) != 64 || strings.Count(string(a.Data["auth.conf"]), "nats://") != 5 {
		t.Fatalf("update: token kept %v, password regenerated %q, auth.conf %s", string(a.Data["token"]) == tok, a.Data["route-password"], a.Data["auth.conf"])
	}
}

// The NetworkPolicy lets the brokers reach the NATS client port, the NATS
// servers each other's route port, and anyone the monitoring port.
func TestNATSNetworkPolicy(t *testing.T) {
	np := find[*networkingv1.NetworkPolicy](t, build(t, cluster(managed), Options{}), "chat-nats")
	if !maps.Equal(np.Spec.PodSelector.MatchLabels, NATSSelector(cluster())) || len(np.Spec.Ingress) != 3 {
		t.Fatalf("spec %+v", np.Spec)
	}
	for i, want := range []struct {
		port int
		from map[string]string
	}{{4222, BrokerSelector(cluster())}, {6222, NATSSelector(cluster())}, {8222, nil}} {
		r := np.Spec.Ingress[i]
		if r.Ports[0].Port.IntValue() != want.port {
			t.Errorf("rule %d port %v, want %d", i, r.Ports[0].Port, want.port)
		}
		if want.from == nil && len(r.From) != 0 || want.from != nil && (len(r.From) != 1 || !maps.Equal(r.From[0].PodSelector.MatchLabels, want.from)) {
			t.Errorf("rule %d from %+v, want %v", i, r.From, want.from)
		}
	}
}

func TestDesiredReplicas(t *testing.T) {
	as := func(lo, hi int32) *v1.AutoscalingSpec { return &v1.AutoscalingSpec{MinReplicas: &lo, MaxReplicas: hi} }
	for _, tc := range []struct {
		replicas *int32
		auto     *v1.AutoscalingSpec
		want     int32
	}{
		{nil, nil, 1},
		{ptr.To[int32](4), nil, 4},
		{ptr.To[int32](0), as(2, 5), 2},
		{ptr.To[int32](9), as(2, 5), 5},
		{ptr.To[int32](3), as(2, 5), 3},
	} {
		cc := cluster(func(cc *v1.CometdCluster) { cc.Spec.Replicas, cc.Spec.Autoscaling = tc.replicas, tc.auto })
		if got := DesiredReplicas(cc); got != tc.want {
			t.Errorf("DesiredReplicas(replicas %v, autoscaling %+v) = %d, want %d", tc.replicas, tc.auto, got, tc.want)
		}
	}
}

func TestEndpoint(t *testing.T) {
	if got := Endpoint(cluster()); got != "http://chat.ns1.svc/cometd" {
		t.Errorf("Endpoint = %s", got)
	}
	if got := Endpoint(cluster(func(cc *v1.CometdCluster) { cc.Spec.Service.Port = 8080 })); got != "http://chat.ns1.svc:8080/cometd" {
		t.Errorf("Endpoint = %s", got)
	}
}

func TestPDB(t *testing.T) {
	cc := cluster(func(cc *v1.CometdCluster) { cc.Spec.DisruptionBudget.MaxUnavailable = ptr.To(intstr.FromString("25%")) })
	pdb := find[*policyv1.PodDisruptionBudget](t, build(t, cc, Options{}), "chat")
	if pdb.Spec.MaxUnavailable.StrVal != "25%" || pdb.Spec.Selector.MatchLabels[LabelName] != AppBroker {
		t.Fatalf("pdb spec = %+v", pdb.Spec)
	}
}

// A policy change rewrites the policy ConfigMap only: the Deployment, its
// config hash included, stays the same, so no pod rolls.
func TestPolicyChangeDoesNotRollPods(t *testing.T) {
	s := testScheme(t)
	objs := func(doc string) []client.Object {
		bs, err := Builders(cluster(), Options{}, s, []byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		var out []client.Object
		for _, b := range bs {
			o := b.Build()
			if err := b.Update(o); err != nil {
				t.Fatal(err)
			}
			out = append(out, o)
		}
		return out
	}
	a, b := objs(`{"version":"a"}`), objs(`{"version":"b"}`)
	if !equality.Semantic.DeepEqual(find[*appsv1.Deployment](t, a, "chat"), find[*appsv1.Deployment](t, b, "chat")) {
		t.Error("the Deployment depends on the policy document")
	}
	if !equality.Semantic.DeepEqual(find[*corev1.ConfigMap](t, a, "chat-config"), find[*corev1.ConfigMap](t, b, "chat-config")) {
		t.Error("broker.yaml depends on the policy document")
	}
	if got := find[*corev1.ConfigMap](t, b, "chat-policy").Data["policy.json"]; got != `{"version":"b"}` {
		t.Errorf("policy ConfigMap = %q", got)
	}
	d := find[*appsv1.Deployment](t, a, "chat")
	var mounted bool
	for _, m := range d.Spec.Template.Spec.Containers[0].VolumeMounts {
		mounted = mounted || (m.MountPath == PolicyDir && m.SubPath == "")
	}
	if !mounted {
		t.Error("the policy ConfigMap is not mounted as a directory (a subPath mount never updates)")
	}
}

func TestPolicySettingsAndKeyMount(t *testing.T) {
	cc := cluster(func(cc *v1.CometdCluster) {
		cc.Spec.Access = v1.AccessSpec{Default: v1.EffectDeny, AllowAnonymous: ptr.To(false), Auth: &v1.AuthSpec{
			Algorithm: "RS256", Issuer: "https://idp", Audience: "chat", KeysSecret: "jwt",
			Keys:          []v1.AuthKey{{Key: "current.pem", ID: "k1"}, {Key: "old.pem"}},
			LeewaySeconds: ptr.To[int32](10), GroupsClaim: "roles",
		}}
	})
	s := PolicySettings(cc)
	if s.Default != "deny" || s.AllowAnonymous || s.Auth.Algorithm != "RS256" || s.Auth.Issuer != "https://idp" ||
		s.Auth.Audience != "chat" || s.Auth.LeewaySeconds == nil || *s.Auth.LeewaySeconds != 10 || s.Auth.GroupsClaim != "roles" ||
		len(s.Auth.Keys) != 2 || s.Auth.Keys[0].File != "/etc/cometd/keys/current.pem" || s.Auth.Keys[0].ID != "k1" {
		t.Fatalf("PolicySettings = %+v", s)
	}
	if d := PolicySettings(cluster()); d.Default != "allow" || !d.AllowAnonymous || d.Auth.Algorithm != "" {
		t.Fatalf("default settings = %+v, want an open cluster", d)
	}
	tpl := find[*appsv1.Deployment](t, build(t, cc, Options{}), "chat").Spec.Template.Spec
	var secret bool
	for _, v := range tpl.Volumes {
		secret = secret || (v.Secret != nil && v.Secret.SecretName == "jwt" && len(v.Secret.Items) == 0)
	}
	if !secret {
		t.Errorf("keys Secret not mounted whole: %+v", tpl.Volumes)
	}
}

// Service annotations follow the spec: added, changed and removed, while
// annotations someone else set stay.
func TestServiceAnnotationsFollowTheSpec(t *testing.T) {
	s := testScheme(t)
	update := func(cc *v1.CometdCluster, svc *corev1.Service) {
		bs, err := Builders(cc, Options{}, s, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := bs[3].Update(svc); err != nil {
			t.Fatal(err)
		}
	}
	cc := cluster(func(cc *v1.CometdCluster) { cc.Spec.Service.Annotations = map[string]string{"a": "1", "b": "2"} })
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "chat", Namespace: "ns1"}}
	update(cc, svc)
	svc.Annotations["other-controller"] = "x"
	cc.Spec.Service.Annotations = map[string]string{"b": "3"}
	update(cc, svc)
	if _, ok := svc.Annotations["a"]; ok || svc.Annotations["b"] != "3" || svc.Annotations["other-controller"] != "x" {
		t.Fatalf("annotations = %v, want a removed, b=3, other-controller kept", svc.Annotations)
	}
	cc.Spec.Service.Annotations = nil
	update(cc, svc)
	if len(svc.Annotations) != 2 || svc.Annotations["other-controller"] != "x" {
		t.Fatalf("annotations = %v, want only other-controller and the spec hash", svc.Annotations)
	}
	before := svc.DeepCopy()
	update(cc, svc)
	if !equality.Semantic.DeepEqual(before, svc) {
		t.Fatal("a no-op update changed the annotations")
	}
}
