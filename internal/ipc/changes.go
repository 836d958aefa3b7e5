package ipc

// UpperEntry is one entry of a sandbox's memory upper layer, as `moat
// do-init` streams them to `moat do` on its --changes-fd once the command
// has ended: one JSON object per line, sent from inside the sandbox (so
// hostile to its reader). A regular file's content follows its line when
// Content is set: exactly Size bytes. The stream ends with Type "end".
//
//	do-init (pid 1 inside)                 moat do (CLI, host)
//	  | command exits; kill the rest          |
//	  |-- UpperEntry {path,type,...} -------->| classify against the host
//	  |-- [Size bytes of content] ----------->| keep under --keep-changes DIR
//	  |-- ...                                 |
//	  |-- UpperEntry {type:"end"} ----------->|
type UpperEntry struct {
	Path string `json:"path"` // absolute, clean, as the sandbox sees it
	// Type is file, dir, symlink, whiteout (a deletion), other, end, or
	// error (Target holds the message).
	Type    string `json:"type"`
	Mode    uint32 `json:"mode,omitempty"` // permission bits
	Size    int64  `json:"size,omitempty"`
	Target  string `json:"target,omitempty"` // a symlink's target
	Opaque  bool   `json:"opaque,omitempty"` // a directory that replaced the lower one
	Content bool   `json:"content,omitempty"`
}
