//go:build tools

// The Node.js language host. Since 2023 it lives in its own module, which the Go module
// proxy serves at no version (it is never tagged), so it is built from the last sdk/v3 release
// that still contained it. Only the host process comes from there: programs run on the
// @pulumi/pulumi version in package.json.
package pulumilanguagenodejs

import _ "github.com/pulumi/pulumi/sdk/v3/nodejs/cmd/pulumi-language-nodejs"
