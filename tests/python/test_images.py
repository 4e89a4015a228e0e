"""/v1/images/generations and /v1/images/edits from the OpenAI Python SDK, on the DCGAN face
generator (`faces`, unconditional 64x64) and the RDN x2 upscaler (`rdn-x2`).

Every image is decoded by Pillow, not Hearth. The upscaler's result on UpscalerJS' own
fixture must match the package's reference output; a mask keeps the unmasked area from a
plain resize; URLs serve without a key until they expire, across a restart; every bad
parameter is a 400 naming it.
"""

import base64
import http.client
import io
import json
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
from openai import OpenAI
from PIL import Image, ImageChops, ImageStat

from conftest import CONFIG, MODELS, Server

UPSCALER = f"""
[[deployments]]
name = "rdn-x2"
kind = "image"
  [[deployments.targets]]
  source = "{MODELS}/rdn-x2"
"""
IMAGES = CONFIG + UPSCALER
FIXTURE = (MODELS / "rdn-x2" / "fixture.png").read_bytes()
FIXTURE_X2 = MODELS / "rdn-x2" / "fixture-x2.png"


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("hearth"), config=IMAGES)
    yield s
    s.stop()


def client(server, key="unused") -> OpenAI:
    return OpenAI(base_url=server.base_url, api_key=key, max_retries=0, timeout=300)


def decode(item) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(item.b64_json)))
    image.load()
    return image


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    assert a.size == b.size, (a.size, b.size)
    return sum(ImageStat.Stat(ImageChops.difference(a.convert("RGB"), b.convert("RGB"))).mean) / 3


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def test_generation_makes_real_faces_as_base64_png(shared_server):
    result = client(shared_server).images.generate(model="faces", prompt="a smiling face")
    assert len(result.data) == 1 and result.data[0].url is None
    image = decode(result.data[0])
    assert image.format == "PNG" and image.size == (64, 64) and image.mode == "RGB"
    # Not a flat or noise-free picture: real structure with contrast.
    assert max(ImageStat.Stat(image).stddev) > 20
    assert result.size == "64x64" and result.output_format == "png"
    assert isinstance(result.model_extra["seed"], int)


def test_a_seed_reproduces_images_and_image_i_uses_seed_plus_i(shared_server):
    c = client(shared_server)
    three = c.images.generate(model="faces", prompt="x", n=3, extra_body={"seed": 1234})
    assert len(three.data) == 3
    again = c.images.generate(model="faces", prompt="x", n=3, extra_body={"seed": 1234})
    assert [d.b64_json for d in three.data] == [d.b64_json for d in again.data]
    assert len({d.b64_json for d in three.data}) == 3, "n images are different images"
    second = c.images.generate(model="faces", prompt="another prompt", extra_body={"seed": 1235})
    assert second.data[0].b64_json == three.data[1].b64_json, "the prompt changes nothing"
    assert three.model_extra["seed"] == 1234
    unseeded = c.images.generate(model="faces", prompt="x", n=2)
    assert unseeded.data[0].b64_json != three.data[0].b64_json


@pytest.mark.parametrize("fmt,pil", [("png", "PNG"), ("jpeg", "JPEG"), ("webp", "WEBP")])
def test_every_output_format_decodes(shared_server, fmt, pil):
    result = client(shared_server).images.generate(
        model="faces", prompt="x", output_format=fmt, extra_body={"seed": 5}
    )
    image = decode(result.data[0])
    assert image.format == pil and image.size == (64, 64)
    assert result.output_format == fmt


def test_jpeg_compression_trades_size_for_quality(shared_server):
    c = client(shared_server)
    sizes = {}
    for level in (10, 95):
        result = c.images.generate(model="faces", prompt="x", output_format="jpeg",
                                   output_compression=level, extra_body={"seed": 9})
        sizes[level] = len(base64.b64decode(result.data[0].b64_json))
    assert sizes[10] < sizes[95], sizes


def test_sizes_are_the_models_or_auto_and_others_are_refused(shared_server):
    c = client(shared_server)
    assert decode(c.images.generate(model="faces", prompt="x", size="auto").data[0]).size == (64, 64)
    assert decode(c.images.generate(model="faces", prompt="x", size="64x64").data[0]).size == (64, 64)
    message = bad(c.images.generate, "size", model="faces", prompt="x", size="1024x1024")
    assert "64x64" in message


def bad(call, param, **kwargs):
    with pytest.raises(openai.BadRequestError) as caught:
        call(**kwargs)
    error = caught.value.body
    assert caught.value.status_code == 400
    assert error["param"] == param, error
    return error["message"]


def test_bad_generation_parameters_are_400s_naming_them(shared_server):
    gen = client(shared_server).images.generate
    bad(gen, "prompt", model="faces", prompt="")
    bad(gen, "prompt", model="faces", prompt="x" * 32001)
    bad(gen, "n", model="faces", prompt="x", n=0)
    bad(gen, "n", model="faces", prompt="x", n=11)
    bad(gen, "response_format", model="faces", prompt="x", response_format="file")
    bad(gen, "output_format", model="faces", prompt="x", output_format="gif")
    bad(gen, "output_compression", model="faces", prompt="x", output_compression=50)
    bad(gen, "output_compression", model="faces", prompt="x", output_format="jpeg", output_compression=101)
    assert "opaque" in bad(gen, "background", model="faces", prompt="x", background="transparent")
    bad(gen, "quality", model="faces", prompt="x", quality="ultra")
    bad(gen, "seed", model="faces", prompt="x", extra_body={"seed": -1})
    bad(gen, "colour", model="faces", prompt="x", extra_body={"colour": "red"})
    bad(gen, "stream", model="faces", prompt="x", extra_body={"stream": True})
    # Accepted and without effect on these models: documented.
    for extra in ({"quality": "high"}, {"background": "opaque"}, {"style": "vivid"}, {"user": "u-1"},
                  {"moderation": "low"}):
        assert client(shared_server).images.generate(model="faces", prompt="x", **extra).data


def test_models_say_what_each_image_model_does(shared_server):
    models = {m.id: m for m in client(shared_server).models.list().data}
    faces = models["faces"].model_extra["image"]
    assert faces["capabilities"] == ["generate"] and faces["uses_prompt"] is False
    assert faces["sizes"] == ["64x64"] and faces["family"] == "dcgan"
    upscaler = models["rdn-x2"].model_extra["image"]
    assert upscaler["capabilities"] == ["edit"] and upscaler["scale"] == 2


def test_asking_a_model_for_what_it_does_not_do_is_model_not_supported(shared_server):
    c = client(shared_server)
    with pytest.raises(openai.BadRequestError) as caught:
        c.images.generate(model="rdn-x2", prompt="a face")
    assert caught.value.body["code"] == "model_not_supported"
    assert "upscaling" in caught.value.body["message"]
    with pytest.raises(openai.BadRequestError) as caught:
        c.images.edit(model="faces", image=("f.png", FIXTURE, "image/png"), prompt="sharper")
    assert caught.value.body["code"] == "model_not_supported"
    assert "ignores the prompt" in caught.value.body["message"]
    with pytest.raises(openai.BadRequestError) as caught:
        c.images.generate(model="all-minilm", prompt="x")
    assert caught.value.body["code"] == "model_not_supported"


def test_the_upscaler_reproduces_the_packages_own_sample(shared_server):
    result = client(shared_server).images.edit(
        model="rdn-x2", image=("fixture.png", FIXTURE, "image/png"), prompt="upscale"
    )
    image = decode(result.data[0])
    assert image.size == (256, 256) and result.size == "256x256"
    assert mean_difference(image, Image.open(FIXTURE_X2)) <= 1.0


def test_a_list_of_images_upscales_each_and_size_must_be_what_it_makes(shared_server):
    small = Image.open(io.BytesIO(FIXTURE)).convert("RGB").resize((50, 30))
    jpeg = io.BytesIO()
    small.save(jpeg, format="JPEG")
    c = client(shared_server)
    result = c.images.edit(
        model="rdn-x2", prompt="upscale",
        image=[("a.png", FIXTURE, "image/png"), ("b.jpg", jpeg.getvalue(), "image/jpeg")],
    )
    assert [decode(d).size for d in result.data] == [(256, 256), (100, 60)]
    assert len(c.images.edit(model="rdn-x2", prompt="x", image=("a.png", FIXTURE, "image/png"),
                             n=2).data) == 2
    ok = c.images.edit(model="rdn-x2", prompt="x", image=("a.png", FIXTURE, "image/png"), size="256x256")
    assert decode(ok.data[0]).size == (256, 256)
    message = bad(c.images.edit, "size", model="rdn-x2", prompt="x",
                  image=("a.png", FIXTURE, "image/png"), size="512x512")
    assert "256x256" in message


def test_a_mask_keeps_the_unmasked_area_from_a_plain_resize(shared_server):
    original = Image.open(io.BytesIO(FIXTURE)).convert("RGB")
    mask = Image.new("RGBA", original.size, (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, 64, 128))  # left half transparent: edit there
    c = client(shared_server)
    plain_edit = decode(c.images.edit(model="rdn-x2", prompt="x", image=("f.png", FIXTURE, "image/png")).data[0])
    masked = decode(c.images.edit(model="rdn-x2", prompt="x", image=("f.png", FIXTURE, "image/png"),
                                  mask=("m.png", png(mask), "image/png")).data[0])
    left, right = (0, 0, 128, 256), (128, 0, 256, 256)
    assert mean_difference(masked.crop(left), plain_edit.crop(left)) == 0
    resized = original.resize((256, 256), Image.Resampling.BICUBIC)
    assert mean_difference(masked.crop(right), resized.crop(right)) < 2.0
    assert mean_difference(masked.crop(right), plain_edit.crop(right)) > 0.5


def test_bad_edits_are_400s_naming_the_parameter(shared_server):
    edit = client(shared_server).images.edit
    image = ("f.png", FIXTURE, "image/png")
    small_mask = png(Image.new("RGBA", (64, 64), (0, 0, 0, 0)))
    assert "same size" in bad(edit, "mask", model="rdn-x2", prompt="x", image=image,
                              mask=("m.png", small_mask, "image/png"))
    no_alpha = png(Image.new("RGB", (128, 128)))
    assert "alpha" in bad(edit, "mask", model="rdn-x2", prompt="x", image=image,
                          mask=("m.png", no_alpha, "image/png"))
    bad(edit, "image[0]", model="rdn-x2", prompt="x", image=("f.png", b"not an image at all", "image/png"))
    gif = io.BytesIO()
    Image.new("RGB", (8, 8)).save(gif, format="GIF")
    assert "PNG, JPEG or WebP" in bad(edit, "image[0]", model="rdn-x2", prompt="x",
                                      image=("f.gif", gif.getvalue(), "image/gif"))
    assert "at most 10" in bad(edit, "image", model="rdn-x2", prompt="x", image=[image] * 11)
    bad(edit, "n", model="rdn-x2", prompt="x", image=[image] * 3, n=4)
    bad(edit, "output_format", model="rdn-x2", prompt="x", image=image, output_format="bmp")


def raw_post(server, path, body: bytes, content_type: str):
    request = urllib.request.Request(server.url(path), data=body, headers={"content-type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_json_edit_bodies_take_base64_and_data_urls(shared_server):
    encoded = base64.b64encode(FIXTURE).decode()
    for body in ({"model": "rdn-x2", "image": encoded},
                 {"model": "rdn-x2", "images": [{"image_url": f"data:image/png;base64,{encoded}"}],
                  "output_format": "webp"}):
        status, answer = raw_post(shared_server, "/v1/images/edits", json.dumps(body).encode(), "application/json")
        assert status == 200, answer
        image = Image.open(io.BytesIO(base64.b64decode(answer["data"][0]["b64_json"])))
        assert image.size == (256, 256)
    status, answer = raw_post(shared_server, "/v1/images/edits",
                              json.dumps({"model": "rdn-x2", "image": "https://example.com/a.png"}).encode(),
                              "application/json")
    assert status == 400 and answer["error"]["param"] == "image", answer
    status, answer = raw_post(shared_server, "/v1/images/edits",
                              json.dumps({"model": "rdn-x2", "image": "%%%"}).encode(), "application/json")
    assert status == 400 and "base64" in answer["error"]["message"], answer


def test_an_upload_over_the_limit_is_413(shared_server):
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\ncontent-disposition: form-data; name=\"model\"\r\n\r\nrdn-x2\r\n"
            f"--{boundary}\r\ncontent-disposition: form-data; name=\"image\"; filename=\"big.png\"\r\n"
            f"content-type: image/png\r\n\r\n").encode() + b"\0" * (65 * 1024 * 1024) + f"\r\n--{boundary}--\r\n".encode()
    # The server answers from the Content-Length before reading the body, so the upload may
    # be cut off mid-send: read the answer anyway.
    connection = http.client.HTTPConnection(shared_server.addr, timeout=60)
    try:
        connection.request("POST", "/v1/images/edits", body=body,
                           headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    except (BrokenPipeError, ConnectionResetError):
        pass
    response = connection.getresponse()
    status, answer = response.status, json.loads(response.read())
    assert status == 413, answer
    assert answer["error"]["code"] == "payload_too_large"


def fetch(url):
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.headers["content-type"], response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["content-type"], e.read()


def test_urls_serve_without_a_key_until_they_expire_even_across_a_restart(tmp_path):
    config = 'image_url_ttl = "3s"\n' + IMAGES
    server = Server(tmp_path, config=config)
    try:
        key = server.create_key("--name", "images")
        c = client(server, key)
        with pytest.raises(openai.AuthenticationError):
            client(server, "sk-wrong").images.generate(model="faces", prompt="x")
        result = c.images.generate(model="faces", prompt="x", n=2, response_format="url")
        urls = [d.url for d in result.data]
        assert all(d.b64_json is None for d in result.data)
        assert len(set(urls)) == 2 and all(u.startswith(server.url("/v1/images/files/")) for u in urls)
        status, kind, body = fetch(urls[0])  # no key sent
        assert status == 200 and kind == "image/png"
        assert Image.open(io.BytesIO(body)).size == (64, 64)
        edit = c.images.edit(model="rdn-x2", prompt="x", image=("f.png", FIXTURE, "image/png"),
                             response_format="url", output_format="jpeg")
        status, kind, body = fetch(edit.data[0].url)
        assert status == 200 and kind == "image/jpeg" and Image.open(io.BytesIO(body)).size == (256, 256)
        guessed = urls[0].rsplit("/", 1)[0] + "/" + "0" * 64 + ".png"
        assert fetch(guessed)[0] == 404
        # Usage counts images per key: 2 generated + 1 edited.
        usage = server.cli("usage").stdout
        header, *lines = usage.splitlines()
        column = header.split().index("IMAGES")
        rows = [line.split() for line in lines]
        assert [row[column] for row in rows if row[0] == "key"] == ["3"], usage
        assert [row[column] for row in rows if row[1] == "faces"] == ["2"], usage
        assert [row[column] for row in rows if row[1] == "rdn-x2"] == ["1"], usage
    finally:
        server.stop()
    images = tmp_path / "data" / "images"
    assert len(list(images.iterdir())) == 3
    time.sleep(3.5)
    server = Server(tmp_path, config=config)
    try:
        assert list(images.iterdir()) == [], "a restart deletes what expired while it was down"
        result = client(server, key).images.generate(model="faces", prompt="x", response_format="url")
        url = result.data[0].url
        assert fetch(url)[0] == 200
        time.sleep(3.5)
        status, _, body = fetch(url)
        assert status == 404 and json.loads(body)["error"]["type"]
    finally:
        server.stop()


def metric(server, name) -> float:
    text = urllib.request.urlopen(server.url("/metrics")).read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


def test_a_client_that_leaves_stops_a_long_upscale(tmp_path):
    server = Server(tmp_path, config=IMAGES)
    try:
        big = png(Image.open(io.BytesIO(FIXTURE)).convert("RGB").resize((1536, 1536)))
        impatient = OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=1.5)
        with pytest.raises(openai.APITimeoutError):
            impatient.images.edit(model="rdn-x2", prompt="x", image=("big.png", big, "image/png"))
        deadline = time.time() + 60
        while metric(server, "hearth_image_cancelled_total") < 1:
            assert time.time() < deadline, "the upscale went on after the client left"
            time.sleep(0.2)
        # The worker is free again at once.
        assert client(server).images.generate(model="faces", prompt="x").data
    finally:
        server.stop()


def test_a_full_queue_is_a_503_with_retry_after(tmp_path):
    config = CONFIG + UPSCALER.replace('kind = "image"', 'kind = "image"\nmax_queued_requests = 1')
    server = Server(tmp_path, config=config)
    try:
        picture = png(Image.open(io.BytesIO(FIXTURE)).convert("RGB").resize((512, 512)))
        boundary = uuid.uuid4().hex
        body = (f"--{boundary}\r\ncontent-disposition: form-data; name=\"model\"\r\n\r\nrdn-x2\r\n"
                f"--{boundary}\r\ncontent-disposition: form-data; name=\"image\"; filename=\"p.png\"\r\n"
                f"content-type: image/png\r\n\r\n").encode() + picture + f"\r\n--{boundary}--\r\n".encode()

        def post(_):
            connection = http.client.HTTPConnection(server.addr, timeout=300)
            connection.request("POST", "/v1/images/edits", body=body,
                               headers={"content-type": f"multipart/form-data; boundary={boundary}"})
            response = connection.getresponse()
            return response.status, response.getheader("retry-after"), json.loads(response.read())

        # One upscale runs, one waits in the queue of one: the others are turned away at once.
        with ThreadPoolExecutor(5) as pool:
            answers = list(pool.map(post, range(5)))
        statuses = sorted(status for status, _, _ in answers)
        assert statuses.count(200) >= 2 and 503 in statuses, statuses
        for status, retry_after, answer in answers:
            if status == 503:
                assert retry_after and int(retry_after) >= 1
                assert answer["error"]["type"] and "queue" in answer["error"]["message"]
            else:
                assert status == 200, answer
    finally:
        server.stop()
