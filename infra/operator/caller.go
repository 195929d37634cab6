package operator

import (
	"context"
	"net/http"
)

type actorKey struct{}

// WithActor returns ctx naming who acts: the console sets it from its
// session, before an action handler runs.
func WithActor(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, actorKey{}, name)
}

// Actor names who makes request r, for the record of operator actions: the
// name WithActor set, else "api-token" (the query API's one shared bearer
// token names no one).
func Actor(r *http.Request) string {
	if name, ok := r.Context().Value(actorKey{}).(string); ok && name != "" {
		return name
	}
	return "api-token"
}
