#!/usr/bin/python3
"""A WHIP publisher made of GStreamer's webrtcbin and nothing of madang.

videotestsrc -> x264enc (constrained baseline) and audiotestsrc -> opusenc into webrtcbin;
one POST to the WHIP endpoint with every candidate in the offer (no trickle), the answer
applied, SECONDS of media, then a DELETE of the session. The ICE agent offers the loopback
address only (the test server listens there).

Usage: whip_publish.py URL TOKEN SECONDS
Prints one JSON object a line: {"post": status, "location": ..., "links": [...]}, then
{"frames": pictures encoded, "sent": those encoded while connected, "deleted": status}
at the end, or {"error": ...}.
"""

import json
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("Nice", "0.1")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC, Nice  # noqa: E402

URL, TOKEN, SECONDS = sys.argv[1], sys.argv[2], float(sys.argv[3])

Gst.init(None)
PIPELINE = Gst.parse_launch(
    "webrtcbin name=w bundle-policy=max-bundle "
    "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1 "
    "! videoconvert ! x264enc name=enc tune=zerolatency speed-preset=ultrafast bitrate=500 "
    "key-int-max=60 ! video/x-h264,profile=constrained-baseline "
    "! rtph264pay config-interval=-1 aggregate-mode=zero-latency "
    "! application/x-rtp,media=video,encoding-name=H264,payload=102 ! w. "
    "audiotestsrc is-live=true wave=sine volume=0.3 ! audioconvert ! audioresample ! opusenc "
    "! rtpopuspay ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111 ! w."
)
WEBRTC = PIPELINE.get_by_name("w")
LOOP = GLib.MainLoop()
STATE = {"frames": 0, "connected_frames": 0, "location": None, "offered": False}


def say(obj):
    print(json.dumps(obj), flush=True)


def fail(why):
    say({"error": why})
    LOOP.quit()


def count_frame(_pad, _info):
    STATE["frames"] += 1
    connected = WEBRTC.get_property("connection-state")
    if connected == GstWebRTC.WebRTCPeerConnectionState.CONNECTED:
        STATE["connected_frames"] += 1
    return Gst.PadProbeReturn.OK


PIPELINE.get_by_name("enc").get_static_pad("src").add_probe(
    Gst.PadProbeType.BUFFER, count_frame
)

# The test server listens on the loopback address: gather there only (libnice uses just
# the addresses added, when any are).
LOOPBACK = Nice.Address.new()
LOOPBACK.set_from_string("127.0.0.1")
ICE = WEBRTC.get_property("ice-agent")
# GStreamer 1.22's webrtcbin hands its ICE agent out without a reference of its own: take
# one, or Python's release at exit of this scope frees the agent under webrtcbin.
ICE.ref()
ICE.get_property("agent").add_local_address(LOOPBACK)


def request(method, url, body=None):
    headers = {"Authorization": "Bearer " + TOKEN}
    if body is not None:
        headers["Content-Type"] = "application/sdp"
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def post_offer(sdp):
    status, headers, body = request("POST", URL, sdp.encode())
    location = headers.get("Location")
    say({"post": status, "location": location, "links": headers.get_all("Link") or []})
    if status != 201:
        GLib.idle_add(fail, "POST refused: %s" % body.strip())
        return
    STATE["location"] = urllib.parse.urljoin(URL, location)
    GLib.idle_add(apply_answer, body)


def apply_answer(text):
    ok, sdp = GstSdp.SDPMessage.new_from_text(text)
    if ok != GstSdp.SDPResult.OK:
        fail("the answer does not parse")
        return False
    answer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, sdp)
    WEBRTC.emit("set-remote-description", answer, Gst.Promise.new())
    GLib.timeout_add(int(SECONDS * 1000), finish)
    return False


def finish():
    status, _, _ = request("DELETE", STATE["location"])
    say({"frames": STATE["frames"], "sent": STATE["connected_frames"], "deleted": status})
    LOOP.quit()
    return False


def on_gathering(element, _pspec):
    done = element.get_property("ice-gathering-state") == GstWebRTC.WebRTCICEGatheringState.COMPLETE
    if done and not STATE["offered"]:
        STATE["offered"] = True
        sdp = element.get_property("local-description").sdp.as_text()
        threading.Thread(target=post_offer, args=(sdp,), daemon=True).start()


def on_offer(promise, _data):
    reply = promise.get_reply()
    offer = reply.get_value("offer")
    WEBRTC.emit("set-local-description", offer, Gst.Promise.new())


def on_negotiation_needed(element):
    index = 0
    while (transceiver := element.emit("get-transceiver", index)) is not None:
        transceiver.set_property("direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY)
        index += 1
    element.emit("create-offer", None, Gst.Promise.new_with_change_func(on_offer, None))


WEBRTC.connect("on-negotiation-needed", on_negotiation_needed)
WEBRTC.connect("notify::ice-gathering-state", on_gathering)
GLib.timeout_add(int((SECONDS + 30) * 1000), fail, "timed out")
PIPELINE.set_state(Gst.State.PLAYING)
LOOP.run()
PIPELINE.set_state(Gst.State.NULL)
