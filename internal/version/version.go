// Package version holds the build's version strings, set at link time with
// -ldflags "-X github.com/mecha-dev/mecha/internal/version.Version=v0.2.0".
package version

// Version is Mecha's release version.
var Version = "0.1.0-dev"

// DaprAPI is the Dapr API release whose wire contract this build implements.
const DaprAPI = "1.18.3"
