//go:build tools

package pulumi

import _ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
