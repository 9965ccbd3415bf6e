"""A real RTSP server for the tests: GStreamer's RTSP server (Debian: gir1.2-gst-rtsp-server-1.0,
gstreamer1.0-plugins-{base,good,bad}) serving an MP4/H.264 file, with HTTP-style basic auth.

Runs under the SYSTEM python3 (python3-gi lives there, not in the venv):

    /usr/bin/python3 tests/streams/rtsp_server.py PORT FILE MOUNT [USER PASSWORD]

Prints READY once listening on 127.0.0.1:PORT. Every client gets its own pipeline from the file's start,
played at the file's own rate (as a camera would); the stream ends with the file.
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> None:
    port, path, mount = sys.argv[1], sys.argv[2], sys.argv[3]
    user, password = (sys.argv[4], sys.argv[5]) if len(sys.argv) > 5 else (None, None)
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(f"( filesrc location={path} ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )")
    factory.set_shared(False)
    if user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", user)
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
        server.set_auth(auth)
        role, _ = Gst.Structure.from_string(f"{user}, media.factory.access=(boolean)true, media.factory.construct=(boolean)true")
        factory.add_role_from_structure(role)
    server.get_mount_points().add_factory(mount, factory)
    if server.attach(None) == 0:
        print("FAILED to attach", flush=True)
        sys.exit(1)
    print("READY", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
