// Package controllers holds the operator's reconcilers. Each child object is built
// by a pure function in controllers/resources; the reconcilers apply them.
package controllers

// +kubebuilder:rbac:groups=cometd.bayeux.dev,resources=cometdclusters,verbs=get;list;watch
// +kubebuilder:rbac:groups=cometd.bayeux.dev,resources=cometdclusters/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=cometd.bayeux.dev,resources=cometdclusters/scale,verbs=get;update;patch
// +kubebuilder:rbac:groups=autoscaling,resources=horizontalpodautoscalers,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=cometd.bayeux.dev,resources=channelpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=cometd.bayeux.dev,resources=channelpolicies/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=services;configmaps;secrets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=networking.k8s.io,resources=networkpolicies,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
