package bayeux

// Transport names, as they appear on the wire in supportedConnectionTypes and
// connectionType. Every package that names a transport uses these.
const (
	TransportWebSocket       = "websocket"
	TransportLongPolling     = "long-polling"
	TransportCallbackPolling = "callback-polling"
)
