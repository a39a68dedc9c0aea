package dashboard

import "errors"

// ErrHubRan is returned by Hub.Run when the hub is already running or has
// already run: a Hub serves one lifetime.
var ErrHubRan = errors.New("dashboard: hub already running or stopped")
