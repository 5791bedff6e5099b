package media

import _ "github.com/pion/webrtc/v4" // pinned; see go.mod
