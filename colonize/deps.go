package colonize

import (
	_ "github.com/kevinburke/ssh_config"
	_ "github.com/skeema/knownhosts"
	_ "golang.org/x/crypto/ssh"
	_ "golang.org/x/crypto/ssh/agent"
)
