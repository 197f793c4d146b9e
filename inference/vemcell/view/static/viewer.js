/* vemcell viewer: one self-contained page that shows a vemcell run folder's 3D cell model.
 *
 * Everything it needs is inside the page: three.js (the global THREE, bundled before this
 * script), the manifest (JSON), the meshes (quantised, delta-coded, gzip) and, when the run's
 * volume was at hand, a downsampled EM volume (a JPEG atlas of its sections). No network.
 *
 * Coordinates are vemcell's own, in µm, Z up: X along the columns, Y along the rows and Z
 * across the sections of the volume. The scripting hook is window.vemcellViewer (see API below).
 */
(function () {
  'use strict';

  const T = THREE;
  const $ = (id) => document.getElementById(id);
  const manifest = JSON.parse($('vemcell-manifest').textContent);
  const BACKGROUND = 0x1d2126;
  const AXES = { x: 0, y: 1, z: 2 };
  const NO_CUT = 1e9; // a plane constant so far away that nothing is clipped

  let resolveReady, rejectReady;
  const ready = new Promise((res, rej) => { resolveReady = res; rejectReady = rej; });
  ready.catch(() => {}); // reported on the page; a caller that awaits still sees the rejection
  window.vemcellViewer = { ready }; // the whole hook once the page is set up; ready at once

  const timings = { start: performance.now() };
  const state = {
    objects: [], // per object: {name, data, cls, mesh, material, stencil: [back, front], cap, on}
    byName: new Map(),
    classes: new Map(), // class index -> {index, name, color, opacity, on, row}
    cells: new Map(), // cell key -> {key, label, objects: [], checkbox}
    cut: { axis: 'none', fraction: 0.5, flip: false, azimuth: 30, elevation: 35, dir: new T.Vector3(0, 0, 1) },
    caps: true,
    em: false,
    emAvailable: false,
    overlay: 0.45,
    ortho: false,
    axes: true,
    box: false,
    selected: null,
  };

  // ---- renderer, cameras, controls -------------------------------------------------------

  /* The WebGL renderer's name, and whether it is a software one (no GPU: SwiftShader, llvmpipe).
   * Software renderers get no multisampling and one pixel per CSS pixel: that makes each
   * frame about three times cheaper, which is what keeps the page usable there. */
  function probeRenderer() {
    try {
      const gl = document.createElement('canvas').getContext('webgl2');
      if (!gl) return { name: '', software: false };
      let name = String(gl.getParameter(gl.RENDERER));
      if (/^WebKit WebGL$/.test(name)) {  // masked (Chrome): ask for the real name
        const ext = gl.getExtension('WEBGL_debug_renderer_info');
        if (ext) name = String(gl.getParameter(ext.UNMASKED_RENDERER_WEBGL));
      }
      return { name, software: /swiftshader|llvmpipe|softpipe|software|basic render/i.test(name) };
    } catch (err) {
      return { name: '', software: false };
    }
  }
  const gpu = probeRenderer();
  // ?antialias=1 (or 0) in the page's address overrides that choice, e.g. for a figure
  const params = new URLSearchParams(window.location.search);
  const antialias = params.has('antialias') ? params.get('antialias') !== '0' : !gpu.software;

  const canvas = $('scene');
  let renderer;
  try {
    renderer = new T.WebGLRenderer({ canvas, antialias, stencil: true, alpha: false });
  } catch (err) {
    fail('This page needs WebGL2, which this browser does not provide (' + err.message + ').');
    return;
  }
  renderer.localClippingEnabled = true;
  renderer.setPixelRatio(antialias ? Math.min(window.devicePixelRatio || 1, 2) : 1);
  renderer.setClearColor(BACKGROUND, 1);

  const scene = new T.Scene();
  const persp = new T.PerspectiveCamera(35, 1, 0.001, 1000);
  const ortho = new T.OrthographicCamera(-1, 1, 1, -1, -1000, 1000);
  persp.up.set(0, 0, 1);
  ortho.up.set(0, 0, 1);
  let camera = persp;
  let controls = null;

  const hemisphere = new T.HemisphereLight(0xffffff, 0x50555c, 1.6);
  hemisphere.position.set(0, 0, 1); // sky above, in Z-up coordinates
  scene.add(hemisphere);
  const headlight = new T.DirectionalLight(0xffffff, 1.9);
  headlight.position.set(0.4, 0.6, 1.0);
  const headTarget = new T.Object3D();
  headTarget.position.set(0, 0, -1);
  headlight.target = headTarget;
  for (const cam of [persp, ortho]) scene.add(cam);
  persp.add(headlight, headTarget);

  const plane = new T.Plane(new T.Vector3(0, 0, -1), NO_CUT); // keeps n·p + c >= 0
  const clipping = [plane];

  // bounds: the volume box (when known) and every mesh
  const bounds = new T.Box3(new T.Vector3(...manifest.bounds.min), new T.Vector3(...manifest.bounds.max));
  const centre = bounds.getCenter(new T.Vector3());
  const radius = Math.max(bounds.getSize(new T.Vector3()).length() / 2, 1e-3);

  const root = new T.Group();
  const capGroup = new T.Group();
  scene.add(root, capGroup);
  // a unit square, scaled to each use: caps only cover their own object's cross-section, so
  // the stencil test runs on as few pixels as possible (it is what software WebGL pays for)
  const planeGeometry = new T.PlaneGeometry(1, 1);

  const boxHelper = new T.Box3Helper(bounds, 0x7f8a96);
  boxHelper.visible = false;
  scene.add(boxHelper);

  let frameRequested = false;
  let firstFrameDone = false;
  function requestRender() {
    if (frameRequested) return;
    frameRequested = true;
    requestAnimationFrame(() => { frameRequested = false; render(); });
  }

  function render() {
    resize();
    renderer.render(scene, camera);
    drawOverlays();
    if (!firstFrameDone && state.objects.length) {
      firstFrameDone = true;
      // wait for the frame to be drawn, not just queued (reading one pixel back does)
      const gl = renderer.getContext();
      gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, new Uint8Array(4));
      timings.firstFrameMs = performance.now();
    }
  }

  function resize() {
    const w = Math.max(1, canvas.clientWidth), h = Math.max(1, canvas.clientHeight);
    const size = renderer.getSize(new T.Vector2());
    if (size.x !== w || size.y !== h) renderer.setSize(w, h, false);
    const aspect = w / h;
    persp.aspect = aspect;
    persp.updateProjectionMatrix();
    const halfH = orthoHalfHeight;
    ortho.left = -halfH * aspect; ortho.right = halfH * aspect; ortho.top = halfH; ortho.bottom = -halfH;
    ortho.updateProjectionMatrix();
  }
  let orthoHalfHeight = radius;

  function makeControls(target) {
    if (controls) controls.dispose();
    controls = new T.OrbitControls(camera, canvas);
    controls.enableDamping = false;
    controls.zoomToCursor = true;
    controls.target.copy(target || centre);
    controls.addEventListener('change', () => { fitClipRange(); requestRender(); });
    controls.update();
  }

  /* Near and far planes follow the distance to the centre of rotation, so zooming far in does
   * not cut the model open and depth keeps its precision (the caps rely on it). */
  function fitClipRange() {
    if (!controls || !camera.isPerspectiveCamera) return;
    const d = camera.position.distanceTo(controls.target);
    camera.near = Math.max(d / 100, 1e-6);
    camera.far = Math.max(d * 20, d + 4 * radius);
    camera.updateProjectionMatrix();
  }

  const VIEWS = {
    home: new T.Vector3(0.9, -1.35, 0.85),
    top: new T.Vector3(0, -1e-4, 1),
    front: new T.Vector3(0, -1, 0),
    side: new T.Vector3(1, 0, 0),
  };

  // the view is fitted to the meshes (the volume box can be much larger than the cells)
  const modelBounds = new T.Box3();
  function setView(name) {
    const dir = (VIEWS[name] || VIEWS.home).clone().normalize();
    const box = modelBounds.isEmpty() ? bounds : modelBounds;
    const c = box.getCenter(new T.Vector3());
    const r = Math.max(box.getSize(new T.Vector3()).length() / 2, 1e-3);
    const aspect = Math.min(1, (canvas.clientWidth || 1) / (canvas.clientHeight || 1));
    const half = T.MathUtils.degToRad(persp.fov / 2);
    const dist = (r * 0.92) / Math.sin(Math.atan(Math.tan(half) * aspect));
    for (const cam of [persp, ortho]) cam.position.copy(c).addScaledVector(dir, dist);
    orthoHalfHeight = dist * Math.tan(half);
    ortho.zoom = 1;
    persp.near = dist / 100; persp.far = dist * 20;
    ortho.near = -dist * 20; ortho.far = dist * 20;
    persp.lookAt(c); ortho.lookAt(c);
    resize();
    makeControls(c);
    requestRender();
  }

  function setOrtho(on) {
    on = !!on;
    if (on === state.ortho) return;
    const target = controls.target.clone();
    const dist = camera.position.distanceTo(target);
    if (on) {
      ortho.position.copy(persp.position);
      ortho.quaternion.copy(persp.quaternion);
      orthoHalfHeight = dist * Math.tan(T.MathUtils.degToRad(persp.fov / 2));
      ortho.zoom = 1;
      camera = ortho;
    } else {
      const halfH = orthoHalfHeight / ortho.zoom;
      const d = halfH / Math.tan(T.MathUtils.degToRad(persp.fov / 2));
      const dir = ortho.position.clone().sub(target).normalize();
      persp.position.copy(target).addScaledVector(dir, d);
      persp.quaternion.copy(ortho.quaternion);
      camera = persp;
    }
    camera.add(headlight, headTarget);
    state.ortho = on;
    $('btn-ortho').classList.toggle('on', on);
    resize();
    makeControls(target);
    requestRender();
  }

  // ---- decoding the embedded data ------------------------------------------------------------

  async function embeddedBytes(id) {
    const text = $(id).textContent.trim();
    if (!text) return null;
    if (typeof Uint8Array.fromBase64 === 'function') return Uint8Array.fromBase64(text);
    const response = await fetch('data:application/octet-stream;base64,' + text);
    return new Uint8Array(await response.arrayBuffer());
  }

  async function gunzip(bytes) {
    if (typeof DecompressionStream === 'undefined') {
      throw new Error('this browser has no DecompressionStream; use a current Chrome, Edge, Firefox or Safari');
    }
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }

  /* One mesh of codec vemcell-mesh/1: indices as LEB128 varints of (next new vertex - index),
   * vertices in order of first use, positions as zigzag deltas of quantised integers stored
   * as three byte planes (low, middle, high) of the X, Y and Z columns. */
  function decodeMesh(buf, e, codec) {
    const n = e.faces * 3;
    const index = e.vertices > 65535 ? new Uint32Array(n) : new Uint16Array(n);
    let p = e.index_offset, next = 0;
    for (let k = 0; k < n; k++) {
      let b = buf[p++], code = b & 127, shift = 7;
      while (b & 128) { b = buf[p++]; code += (b & 127) * 2 ** shift; shift += 7; }
      index[k] = next - code;
      if (code === 0) next++;
    }
    const nv = e.vertices;
    const position = new Float32Array(nv * 3);
    const base = e.position_offset, step = codec.step;
    for (let c = 0; c < 3; c++) {
      const b0 = base + c * nv, b1 = base + (3 + c) * nv, b2 = base + (6 + c) * nv;
      const origin = codec.origin[c];
      let q = 0;
      for (let i = 0; i < nv; i++) {
        const zz = buf[b0 + i] | (buf[b1 + i] << 8) | (buf[b2 + i] << 16);
        q += (zz >>> 1) ^ -(zz & 1);
        position[i * 3 + c] = origin + q * step;
      }
    }
    const geometry = new T.BufferGeometry();
    geometry.setAttribute('position', new T.BufferAttribute(position, 3));
    geometry.setIndex(new T.BufferAttribute(index, 1));
    geometry.computeVertexNormals();
    geometry.computeBoundingBox();
    geometry.computeBoundingSphere();
    return geometry;
  }

  // ---- building the scene ----------------------------------------------------------------------

  function colorOf(rgba) {
    return new T.Color().setRGB(rgba[0], rgba[1], rgba[2], T.SRGBColorSpace);
  }

  function buildClasses() {
    for (const c of manifest.classes) {
      state.classes.set(c.index, {
        index: c.index, name: c.name, color: c.color, opacity: c.color[3] ?? 1, on: true,
      });
    }
    for (const o of manifest.objects) {
      if (!state.classes.has(o.class_index)) {
        state.classes.set(o.class_index, {
          index: o.class_index, name: o.class_name, color: o.color, opacity: o.color[3] ?? 1, on: true,
        });
      }
    }
  }

  function buildObjects(buf) {
    const codec = manifest.meshes;
    manifest.objects.forEach((data, k) => {
      const cls = state.classes.get(data.class_index);
      const geometry = decodeMesh(buf, data.packed, codec);
      const material = new T.MeshStandardMaterial({
        color: colorOf(data.color), roughness: 0.62, metalness: 0.0, side: T.DoubleSide,
        clippingPlanes: clipping,
        // translucent and two-sided in one pass, not two: both sides have the class colour, so
        // the blend hardly depends on the order, and the biggest meshes (cells) cost half
        forceSinglePass: true,
      });
      const mesh = new T.Mesh(geometry, material);
      mesh.name = data.name;
      mesh.userData.index = k;
      // stencil counting: back faces add one, front faces take one away; the cap is drawn
      // where the count is not zero, i.e. where the cut plane lies inside the closed mesh
      const stencil = [T.BackSide, T.FrontSide].map((side) => {
        const m = new T.MeshBasicMaterial({
          side, colorWrite: false, depthWrite: false, depthTest: false, transparent: true,
          clippingPlanes: clipping, stencilWrite: true, stencilFunc: T.AlwaysStencilFunc,
        });
        const op = side === T.BackSide ? T.IncrementWrapStencilOp : T.DecrementWrapStencilOp;
        m.stencilFail = op; m.stencilZFail = op; m.stencilZPass = op;
        const s = new T.Mesh(geometry, m);
        s.visible = false;
        return s;
      });
      const capMaterial = new T.MeshBasicMaterial({
        color: colorOf(data.color), side: T.DoubleSide, transparent: true,
        stencilWrite: true, stencilRef: 0, stencilFunc: T.NotEqualStencilFunc,
        stencilFail: T.ReplaceStencilOp, stencilZFail: T.ReplaceStencilOp, stencilZPass: T.ReplaceStencilOp,
      });
      const cap = new T.Mesh(planeGeometry, capMaterial);
      cap.visible = false;
      cap.name = data.name + ' (cap)';
      const obj = {
        name: data.name, data, cls, mesh, material, stencil, cap, capMaterial, on: true,
        box: geometry.boundingBox.clone(), label: null, crossed: false,
      };
      obj.centre = obj.box.getCenter(new T.Vector3());
      obj.size = obj.box.getSize(new T.Vector3()).length() * 1.02 + 1e-6;
      cap.scale.set(obj.size, obj.size, 1);
      root.add(mesh);
      capGroup.add(stencil[0], stencil[1], cap);
      state.objects.push(obj);
      state.byName.set(data.name, obj);
    });
    // caps are drawn larger objects first, so a cell's cap lies under its organelles' caps
    const order = [...state.objects].sort((a, b) => boxVolume(b.box) - boxVolume(a.box));
    order.forEach((obj, k) => {
      obj.stencil[0].renderOrder = 10 + 3 * k;
      obj.stencil[1].renderOrder = 10 + 3 * k;
      obj.cap.renderOrder = 11 + 3 * k;
      // every cap lies in the cut plane, like the EM section, but on its own square, so their
      // depths differ by rounding: each cap is pulled a little towards the eye, a later one
      // (an organelle, drawn after its cell) more, so none flickers against another or the EM
      obj.capMaterial.polygonOffset = true;
      obj.capMaterial.polygonOffsetFactor = -1;
      obj.capMaterial.polygonOffsetUnits = -4 * (k + 1);
    });
    state.translucentOrder = 20 + 3 * order.length;
    for (const obj of state.objects) modelBounds.union(obj.box);
  }

  function boxVolume(b) {
    const s = b.getSize(new T.Vector3());
    return s.x * s.y * s.z;
  }

  // ---- EM section ------------------------------------------------------------------------------

  let emPlane = null;

  async function buildEM() {
    const em = manifest.em;
    if (!em) return;
    const bytes = await embeddedBytes('vemcell-em');
    if (!bytes) return;
    const [nz, ny, nx] = em.shape_zyx;
    const max3d = renderer.getContext().getParameter(renderer.getContext().MAX_3D_TEXTURE_SIZE);
    if (Math.max(nx, ny, nz) > max3d) {
      $('em-note').textContent = `EM section not shown: this GPU takes 3D textures up to ${max3d} voxels a side.`;
      return;
    }
    const bitmap = await createImageBitmap(new Blob([bytes], { type: em.mime }), {
      colorSpaceConversion: 'none', premultiplyAlpha: 'none',
    });
    const c2d = document.createElement('canvas');
    c2d.width = bitmap.width; c2d.height = bitmap.height;
    const ctx = c2d.getContext('2d', { willReadFrequently: true });
    ctx.drawImage(bitmap, 0, 0);
    const rgba = ctx.getImageData(0, 0, bitmap.width, bitmap.height).data;
    const data = new Uint8Array(nx * ny * nz);
    const [tileW, tileH] = em.tile;
    const cols = em.columns, width = bitmap.width;
    for (let z = 0; z < nz; z++) {
      const x0 = (z % cols) * tileW, y0 = Math.floor(z / cols) * tileH;
      for (let y = 0; y < ny; y++) {
        let src = ((y0 + y) * width + x0) * 4, dst = (z * ny + y) * nx;
        for (let x = 0; x < nx; x++, src += 4) data[dst + x] = rgba[src];
      }
    }
    const texture = new T.Data3DTexture(data, nx, ny, nz);
    texture.format = T.RedFormat;
    texture.type = T.UnsignedByteType;
    texture.minFilter = T.LinearFilter;
    texture.magFilter = T.LinearFilter;
    texture.unpackAlignment = 1;
    texture.needsUpdate = true;
    const material = new T.ShaderMaterial({
      uniforms: {
        volume: { value: texture },
        origin: { value: new T.Vector3(...em.origin) },
        spacing: { value: new T.Vector3(...em.spacing) },
        shape: { value: new T.Vector3(nx, ny, nz) },
      },
      vertexShader: `
        varying vec3 vWorld;
        void main() {
          vec4 w = modelMatrix * vec4(position, 1.0);
          vWorld = w.xyz;
          gl_Position = projectionMatrix * viewMatrix * w;
        }`,
      fragmentShader: `
        precision highp sampler3D;
        uniform sampler3D volume;
        uniform vec3 origin;
        uniform vec3 spacing;
        uniform vec3 shape;
        varying vec3 vWorld;
        void main() {
          vec3 t = ((vWorld - origin) / spacing + 0.5) / shape;
          if (any(lessThan(t, vec3(0.0))) || any(greaterThan(t, vec3(1.0)))) discard;
          float g = texture(volume, t).r;
          gl_FragColor = vec4(vec3(g), 1.0);
        }`,
      side: T.DoubleSide,
      transparent: true, // drawn in the same ordered pass as the caps, just before them
      depthWrite: true,
    });
    emPlane = new T.Mesh(planeGeometry, material);
    emPlane.scale.set(radius * 2.04, radius * 2.04, 1);
    emPlane.renderOrder = 5;
    emPlane.visible = false;
    emPlane.name = 'EM section';
    capGroup.add(emPlane);
    state.emAvailable = true;
    $('chk-em').disabled = false;
    $('overlay-opacity').disabled = false;
    $('em-note').textContent = em.note || '';
  }

  // ---- cut plane -------------------------------------------------------------------------------

  function cutDirection() {
    const cut = state.cut;
    if (cut.axis in AXES) {
      const d = new T.Vector3();
      d.setComponent(AXES[cut.axis], 1);
      return d;
    }
    if (cut.axis === 'free') {
      const az = T.MathUtils.degToRad(cut.azimuth), el = T.MathUtils.degToRad(cut.elevation);
      return new T.Vector3(Math.cos(el) * Math.cos(az), Math.cos(el) * Math.sin(az), Math.sin(el));
    }
    return null;
  }

  function extentAlong(d, box = bounds) {
    let lo = Infinity, hi = -Infinity;
    for (let i = 0; i < 8; i++) {
      const p = new T.Vector3(
        i & 1 ? box.max.x : box.min.x, i & 2 ? box.max.y : box.min.y, i & 4 ? box.max.z : box.min.z,
      );
      const v = d.dot(p);
      lo = Math.min(lo, v); hi = Math.max(hi, v);
    }
    return [lo, hi];
  }

  function applyCut() {
    const d = cutDirection();
    const active = d !== null;
    if (active) {
      const [lo, hi] = extentAlong(d);
      const pos = lo + state.cut.fraction * (hi - lo);
      // keep d·p <= pos (the part below the plane); flipped: keep d·p >= pos
      if (state.cut.flip) plane.set(d.clone(), -pos);
      else plane.set(d.clone().negate(), pos);
      state.cut.dir.copy(d);
      const q = new T.Quaternion().setFromUnitVectors(new T.Vector3(0, 0, 1), d);
      const onPlane = (c) => c.clone().addScaledVector(d, pos - d.dot(c)); // c projected on it
      for (const obj of state.objects) {
        const [a, b] = extentAlong(d, obj.box);
        obj.crossed = a <= pos && pos <= b; // only a crossed object has a cut face to fill
        obj.cap.position.copy(onPlane(obj.centre));
        obj.cap.quaternion.copy(q);
        obj.cap.updateMatrixWorld();
      }
      if (emPlane) {
        emPlane.position.copy(onPlane(centre));
        emPlane.quaternion.copy(q);
        emPlane.updateMatrixWorld();
      }
    } else {
      plane.set(new T.Vector3(0, 0, -1), NO_CUT);
      for (const obj of state.objects) obj.crossed = false;
    }
    updateVisibility();
    syncCutControls();
    requestRender();
  }

  function updateVisibility() {
    const active = state.cut.axis !== 'none';
    const emOn = active && state.em && state.emAvailable;
    for (const obj of state.objects) {
      const visible = obj.on && obj.cls.on && obj.cls.opacity > 0;
      const opacity = obj.cls.opacity;
      obj.mesh.visible = visible;
      const translucent = opacity < 0.999;
      if (obj.material.transparent !== translucent) obj.material.needsUpdate = true;
      obj.material.transparent = translucent;
      obj.material.opacity = opacity;
      obj.material.depthWrite = !translucent;
      obj.mesh.renderOrder = translucent ? state.translucentOrder : 0;
      const capped = visible && active && state.caps && obj.crossed;
      obj.stencil[0].visible = capped;
      obj.stencil[1].visible = capped;
      obj.cap.visible = capped;
      const capOpacity = opacity * (emOn ? state.overlay : 1);
      obj.capMaterial.opacity = capOpacity;
      obj.capMaterial.depthWrite = capOpacity >= 0.999;
      obj.material.emissive.setHex(obj === state.selected ? 0x404850 : 0x000000);
    }
    if (emPlane) emPlane.visible = emOn;
    boxHelper.visible = state.box;
    requestRender();
  }

  function setCut(axis, fraction) {
    if (axis === null || axis === undefined || axis === false || axis === 'off') axis = 'none';
    if (Array.isArray(axis)) {
      const v = new T.Vector3(...axis);
      if (!(v.length() > 0)) throw new Error('setCut: a free direction must not be zero');
      v.normalize();
      state.cut.azimuth = T.MathUtils.radToDeg(Math.atan2(v.y, v.x));
      state.cut.elevation = T.MathUtils.radToDeg(Math.asin(T.MathUtils.clamp(v.z, -1, 1)));
      axis = 'free';
    }
    axis = String(axis).toLowerCase();
    if (!(axis in AXES) && axis !== 'free' && axis !== 'none') {
      throw new Error(`setCut: axis must be 'x', 'y', 'z', 'free', 'none' or a direction [x, y, z], not ${axis}`);
    }
    state.cut.axis = axis;
    if (fraction !== undefined && fraction !== null) {
      const f = Number(fraction);
      if (!Number.isFinite(f)) throw new Error('setCut: fraction must be a number from 0 to 1');
      state.cut.fraction = T.MathUtils.clamp(f, 0, 1);
    }
    applyCut();
  }

  /* A cut chosen by hand (button or key) takes away the half nearer the camera, so the cut
   * face is in view; scripts choose the side themselves (setCut keeps the lower half unless
   * setFlip(true)). */
  function cutFacingCamera(axis) {
    if (axis in AXES) {
      const v = new T.Vector3();
      camera.getWorldDirection(v);
      state.cut.flip = v.getComponent(AXES[axis]) > 0;
    }
    setCut(axis);
  }

  function cutFromView() {
    const v = new T.Vector3();
    camera.getWorldDirection(v);
    state.cut.flip = false;
    setCut([-v.x, -v.y, -v.z]); // the half nearest the camera is taken away
  }

  function syncCutControls() {
    const cut = state.cut;
    for (const r of document.querySelectorAll('input[name=cut-axis]')) r.checked = r.value === cut.axis;
    $('cut-pos').value = Math.round(cut.fraction * 1000);
    $('cut-pos').disabled = cut.axis === 'none';
    let text = '';
    const d = cutDirection();
    if (d) {
      const [lo, hi] = extentAlong(d);
      text = fmt(lo + cut.fraction * (hi - lo), 3) + ' µm';
    }
    $('cut-pos-out').textContent = text;
    $('free-controls').hidden = cut.axis !== 'free';
    $('cut-azimuth').value = Math.round(((cut.azimuth % 360) + 360) % 360);
    $('cut-elevation').value = Math.round(cut.elevation);
    $('cut-azimuth-out').textContent = Math.round(((cut.azimuth % 360) + 360) % 360) + '°';
    $('cut-elevation-out').textContent = Math.round(cut.elevation) + '°';
    $('chk-flip').checked = cut.flip;
    $('chk-caps').checked = state.caps;
    $('chk-em').checked = state.em;
    $('overlay-opacity-out').textContent = Math.round(state.overlay * 100) + '%';
  }

  // ---- side panel ------------------------------------------------------------------------------

  function swatch(rgba) {
    const s = document.createElement('span');
    s.className = 'swatch';
    s.style.background = `rgb(${rgba.slice(0, 3).map((v) => Math.round(v * 255)).join(',')})`;
    return s;
  }

  function buildPanel() {
    const run = manifest.run || {};
    const bits = [];
    if (run.input) bits.push(run.input);
    if (run.model) bits.push(`model ${run.model}`);
    if (run.voxel_size_nm_zyx) bits.push(`voxels ${run.voxel_size_nm_zyx.map((v) => fmt(v, 3)).join(' × ')} nm (z y x)`);
    bits.push(`${manifest.objects.length} objects`);
    $('subtitle').textContent = bits.join(' · ');
    $('help-meta').textContent = `Made by vemcell ${manifest.generator || ''} from ${run.folder || 'a run folder'}.`;

    const classesDiv = $('classes');
    for (const cls of [...state.classes.values()].sort((a, b) => a.index - b.index)) {
      if (!state.objects.some((o) => o.cls === cls)) continue;
      const row = document.createElement('div');
      row.className = 'class-row';
      const label = document.createElement('label');
      const box = document.createElement('input');
      box.type = 'checkbox'; box.checked = true;
      box.addEventListener('change', () => { cls.on = box.checked; updateVisibility(); syncTree(); });
      label.append(box, swatch(cls.color), cls.name);
      const slider = document.createElement('input');
      slider.type = 'range'; slider.min = 0; slider.max = 100; slider.value = Math.round(cls.opacity * 100);
      slider.title = `${cls.name} opacity`;
      slider.addEventListener('input', () => { cls.opacity = slider.value / 100; updateVisibility(); });
      row.append(label, slider);
      classesDiv.append(row);
      cls.checkbox = box; cls.slider = slider;
    }

    const tree = $('tree');
    for (const obj of state.objects) {
      const key = obj.data.cell === null || obj.data.cell === undefined ? '' : String(obj.data.cell);
      if (!state.cells.has(key)) {
        const label = key === '' ? 'whole volume' : obj.name.includes('/') ? obj.name.split('/')[0] : `cell ${key}`;
        state.cells.set(key, { key, label, objects: [] });
      }
      state.cells.get(key).objects.push(obj);
    }
    for (const cell of state.cells.values()) {
      const div = document.createElement('div');
      div.className = 'cell';
      const head = document.createElement('label');
      const box = document.createElement('input');
      box.type = 'checkbox'; box.checked = true;
      box.addEventListener('change', () => {
        for (const o of cell.objects) o.on = box.checked;
        updateVisibility(); syncTree();
      });
      head.append(box, cell.label);
      const list = document.createElement('div');
      list.className = 'objects';
      for (const obj of cell.objects) {
        // the checkbox shows or hides; the name selects (and shows the measurements)
        const row = document.createElement('div');
        row.className = 'object';
        const b = document.createElement('input');
        b.type = 'checkbox'; b.checked = true;
        b.title = `show ${obj.name}`;
        b.addEventListener('change', () => { obj.on = b.checked; updateVisibility(); syncTree(); });
        const short = obj.name.includes('/') ? obj.name.split('/').slice(1).join('/') : obj.name;
        const name = document.createElement('span');
        name.className = 'name';
        name.textContent = short;
        name.title = `${obj.name}: click for its measurements`;
        name.addEventListener('click', () => select(state.selected === obj ? null : obj));
        row.append(b, swatch(obj.data.color), name);
        list.append(row);
        obj.label = row; obj.checkbox = b;
      }
      div.append(head, list);
      tree.append(div);
      cell.checkbox = box;
    }
  }

  function syncTree() {
    for (const cell of state.cells.values()) {
      const on = cell.objects.filter((o) => o.on).length;
      cell.checkbox.checked = on === cell.objects.length;
      cell.checkbox.indeterminate = on > 0 && on < cell.objects.length;
      for (const o of cell.objects) {
        o.checkbox.checked = o.on;
        o.label.classList.toggle('selected', o === state.selected);
      }
    }
    for (const cls of state.classes.values()) {
      if (cls.checkbox) { cls.checkbox.checked = cls.on; cls.slider.value = Math.round(cls.opacity * 100); }
    }
  }

  function wirePanel() {
    $('btn-reset').onclick = () => setView('home');
    $('btn-top').onclick = () => setView('top');
    $('btn-front').onclick = () => setView('front');
    $('btn-side').onclick = () => setView('side');
    $('btn-ortho').onclick = () => setOrtho(!state.ortho);
    $('btn-shot').onclick = () => saveScreenshot();
    $('btn-help').onclick = () => toggleHelp(true);
    $('link-help').onclick = (e) => { e.preventDefault(); toggleHelp(true); };
    $('btn-help-close').onclick = () => toggleHelp(false);
    $('help').addEventListener('click', (e) => { if (e.target === $('help')) toggleHelp(false); });
    $('chk-axes').onchange = (e) => { state.axes = e.target.checked; $('app').classList.toggle('no-axes', !state.axes); requestRender(); };
    $('chk-box').onchange = (e) => { state.box = e.target.checked; updateVisibility(); };
    for (const r of document.querySelectorAll('input[name=cut-axis]')) {
      r.addEventListener('change', () => { if (r.checked) cutFacingCamera(r.value); });
    }
    $('cut-pos').addEventListener('input', (e) => setCut(state.cut.axis, e.target.value / 1000));
    $('cut-azimuth').addEventListener('input', (e) => { state.cut.azimuth = Number(e.target.value); applyCut(); });
    $('cut-elevation').addEventListener('input', (e) => { state.cut.elevation = Number(e.target.value); applyCut(); });
    $('btn-from-view').onclick = () => cutFromView();
    $('chk-flip').onchange = (e) => { state.cut.flip = e.target.checked; applyCut(); };
    $('chk-caps').onchange = (e) => { state.caps = e.target.checked; updateVisibility(); };
    $('chk-em').onchange = (e) => showEM(e.target.checked);
    $('overlay-opacity').addEventListener('input', (e) => { state.overlay = e.target.value / 100; updateVisibility(); syncCutControls(); });
    $('chk-em').disabled = true;
    $('overlay-opacity').disabled = true;
  }

  function showEM(on) {
    state.em = !!on;
    if (state.em && state.cut.axis === 'none' && state.emAvailable) setCut('z', state.cut.fraction);
    updateVisibility();
    syncCutControls();
  }

  // ---- picking and measurements ---------------------------------------------------------------

  const raycaster = new T.Raycaster();
  let down = null;
  canvas.addEventListener('pointerdown', (e) => { down = [e.clientX, e.clientY]; });
  canvas.addEventListener('pointerup', (e) => {
    if (!down || Math.hypot(e.clientX - down[0], e.clientY - down[1]) > 4 || e.button !== 0) return;
    const rect = canvas.getBoundingClientRect();
    pickAt(e.clientX - rect.left, e.clientY - rect.top);
  });

  function pickAt(x, y) {
    const ndc = new T.Vector2((x / canvas.clientWidth) * 2 - 1, -(y / canvas.clientHeight) * 2 + 1);
    raycaster.setFromCamera(ndc, camera);
    const meshes = state.objects.filter((o) => o.mesh.visible).map((o) => o.mesh);
    const hits = raycaster.intersectObjects(meshes, false)
      .filter((h) => plane.distanceToPoint(h.point) >= -1e-6);
    const solid = hits.find((h) => state.objects[h.object.userData.index].cls.opacity >= 0.5);
    const hit = solid || hits[0];
    select(hit ? state.objects[hit.object.userData.index] : null);
    return hit ? state.objects[hit.object.userData.index].name : null;
  }

  const LABELS = {
    cell: 'cell', class_name: 'class', volume_um3: 'volume (µm³)', surface_area_um2: 'surface area (µm²)',
    sphericity: 'sphericity', components: 'pieces',
  };

  function select(obj) {
    state.selected = obj || null;
    const info = $('info');
    if (!obj) {
      info.hidden = true;
    } else {
      const m = obj.data.measurements || {};
      const rows = [['cell', obj.data.cell ?? '—'], ['class', obj.data.class_name]];
      for (const key of ['volume_um3', 'surface_area_um2', 'sphericity', 'components']) {
        if (key in m) rows.push([LABELS[key], m[key]]);
      }
      for (const [key, value] of Object.entries(m)) {
        if (key in LABELS || key === 'class_index') continue;
        if (typeof value === 'number' || typeof value === 'string') rows.push([key.replace(/_/g, ' '), value]);
      }
      rows.push(['mesh', `${obj.data.vertices.toLocaleString('en')} vertices, ${obj.data.faces.toLocaleString('en')} faces`]);
      info.innerHTML = '';
      const h = document.createElement('h3');
      h.append(swatch(obj.data.color), obj.name);
      const table = document.createElement('table');
      for (const [k, v] of rows) {
        const tr = table.insertRow();
        const th = document.createElement('th');
        th.textContent = k;
        const td = tr.insertCell();
        td.textContent = typeof v === 'number' ? fmt(v, 4) : String(v);
        tr.prepend(th);
      }
      info.append(h, table);
      info.hidden = false;
    }
    updateVisibility();
    syncTree();
  }

  // ---- overlays: axes gizmo and scale bar --------------------------------------------------------

  const gizmo = $('gizmo');
  function drawOverlays() {
    if (!state.axes) return;
    const g = gizmo.getContext('2d');
    g.clearRect(0, 0, gizmo.width, gizmo.height);
    drawAxes(g, gizmo.width / 2, gizmo.height / 2, 34);
    const sb = scaleBar();
    $('scalebar-bar').style.width = sb.px + 'px';
    $('scalebar-label').textContent = sb.label;
  }

  function drawAxes(g, cx, cy, len) {
    const inv = camera.quaternion.clone().invert();
    const axes = [['X', new T.Vector3(1, 0, 0), '#ff6b6b'], ['Y', new T.Vector3(0, 1, 0), '#7bdc7b'], ['Z', new T.Vector3(0, 0, 1), '#6cb6ff']]
      .map(([n, v, c]) => [n, v.applyQuaternion(inv), c])
      .sort((a, b) => a[1].z - b[1].z);
    g.lineWidth = 2.5;
    g.font = 'bold 12px system-ui, sans-serif';
    g.textAlign = 'center';
    g.textBaseline = 'middle';
    for (const [n, v, c] of axes) {
      g.strokeStyle = c; g.fillStyle = c;
      g.beginPath(); g.moveTo(cx, cy); g.lineTo(cx + v.x * len, cy - v.y * len); g.stroke();
      g.fillText(n, cx + v.x * (len + 9), cy - v.y * (len + 9));
    }
  }

  function pixelsPerMicron() {
    const h = canvas.clientHeight || 1;
    if (camera.isOrthographicCamera) return h / ((ortho.top - ortho.bottom) / ortho.zoom);
    const dist = camera.position.distanceTo(controls ? controls.target : centre);
    return h / (2 * dist * Math.tan(T.MathUtils.degToRad(persp.fov / 2)));
  }

  function scaleBar() {
    const ppu = pixelsPerMicron();
    const want = 120 / ppu;
    const p = 10 ** Math.floor(Math.log10(want));
    let len = p;
    for (const m of [1, 2, 5, 10]) if (m * p <= want) len = m * p;
    return { um: len, px: Math.round(len * ppu), label: `${fmt(len, 3)} µm` };
  }

  // ---- screenshot ------------------------------------------------------------------------------

  function screenshot(options) {
    const overlays = !options || options.overlays !== false;
    render();
    if (!overlays || !state.axes) return canvas.toDataURL('image/png');
    const out = document.createElement('canvas');
    out.width = canvas.width; out.height = canvas.height;
    const g = out.getContext('2d');
    g.drawImage(canvas, 0, 0);
    const k = canvas.width / canvas.clientWidth;
    g.save(); g.scale(k, k);
    drawAxes(g, 56, canvas.clientHeight - 56, 34);
    const sb = scaleBar();
    const x1 = canvas.clientWidth - 16, y = canvas.clientHeight - 30;
    g.fillStyle = '#fff'; g.strokeStyle = '#000a'; g.lineWidth = 1;
    g.fillRect(x1 - sb.px, y, sb.px, 5); g.strokeRect(x1 - sb.px, y, sb.px, 5);
    g.font = '12px system-ui, sans-serif'; g.textAlign = 'center'; g.textBaseline = 'top';
    g.fillStyle = '#e4e7eb'; g.fillText(sb.label, x1 - sb.px / 2, y + 9);
    g.restore();
    return out.toDataURL('image/png');
  }

  function saveScreenshot() {
    const a = document.createElement('a');
    a.href = screenshot();
    a.download = (manifest.title || 'vemcell').replace(/[^\w.-]+/g, '_') + '.png';
    document.body.append(a);
    a.click();
    a.remove();
  }

  // ---- keyboard and help -----------------------------------------------------------------------

  function toggleHelp(on) {
    const help = $('help');
    help.hidden = on === undefined ? !help.hidden : !on;
  }

  window.addEventListener('keydown', (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const tag = (e.target && e.target.tagName) || '';
    if (tag === 'TEXTAREA' || (tag === 'INPUT' && !['checkbox', 'radio', 'range'].includes(e.target.type))) return;
    const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
    const step = e.shiftKey ? 0.1 : 0.01;
    const actions = {
      r: () => setView('home'),
      1: () => setView('side'),
      2: () => setView('front'),
      3: () => setView('top'),
      o: () => setOrtho(!state.ortho),
      x: () => cutFacingCamera(state.cut.axis === 'x' ? 'none' : 'x'),
      y: () => cutFacingCamera(state.cut.axis === 'y' ? 'none' : 'y'),
      z: () => cutFacingCamera(state.cut.axis === 'z' ? 'none' : 'z'),
      c: () => setCut('none'),
      f: () => cutFromView(),
      '[': () => setCut(state.cut.axis, state.cut.fraction - step),
      ']': () => setCut(state.cut.axis, state.cut.fraction + step),
      '{': () => setCut(state.cut.axis, state.cut.fraction - 0.1),
      '}': () => setCut(state.cut.axis, state.cut.fraction + 0.1),
      v: () => { state.cut.flip = !state.cut.flip; applyCut(); },
      k: () => { state.caps = !state.caps; updateVisibility(); syncCutControls(); },
      e: () => showEM(!state.em),
      a: () => $('chk-axes').click(),
      b: () => $('chk-box').click(),
      p: () => saveScreenshot(),
      l: () => { $('app').classList.toggle('panel-hidden'); requestRender(); },
      h: () => toggleHelp(),
      '?': () => toggleHelp(),
      Escape: () => { toggleHelp(false); select(null); },
    };
    const action = actions[key];
    if (action) {
      if (tag === 'INPUT' && e.target.type === 'range' && (key === '[' || key === ']')) e.target.blur();
      e.preventDefault();
      action();
    }
  });

  new ResizeObserver(() => requestRender()).observe(canvas);

  // ---- helpers ---------------------------------------------------------------------------------

  function fmt(v, digits) {
    if (typeof v !== 'number' || !Number.isFinite(v)) return String(v);
    if (Number.isInteger(v) && Math.abs(v) < 1e6) return String(v);
    return Number(v.toPrecision(digits)).toLocaleString('en', { maximumFractionDigits: 8 });
  }

  function fail(message) {
    const s = $('status');
    s.textContent = message;
    s.classList.add('error');
    console.error('vemcell viewer: ' + message);
    rejectReady(new Error(message));
  }

  function project(point) {
    const v = new T.Vector3(...point).project(camera);
    return [(v.x + 1) / 2 * canvas.clientWidth, (1 - v.y) / 2 * canvas.clientHeight];
  }

  function screenBox(name) {
    const obj = objectNamed(name);
    const b = obj.box;
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (let i = 0; i < 8; i++) {
      const [x, y] = project([i & 1 ? b.max.x : b.min.x, i & 2 ? b.max.y : b.min.y, i & 4 ? b.max.z : b.min.z]);
      x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x); y1 = Math.max(y1, y);
    }
    return [x0, y0, x1, y1];
  }

  function objectNamed(name) {
    const obj = state.byName.get(name);
    if (!obj) throw new Error(`no object named ${JSON.stringify(name)}; objects() lists them`);
    return obj;
  }

  function classNamed(name) {
    for (const c of state.classes.values()) if (c.name === name) return c;
    throw new Error(`no class named ${JSON.stringify(name)}`);
  }

  // ---- the scripting hook ----------------------------------------------------------------------

  window.vemcellViewer = {
    /** Resolves (with the timings) once the meshes and the EM section are loaded and drawn. */
    ready,
    /** Object names, in scene.json's order. */
    objects: () => state.objects.map((o) => o.name),
    /** Show or hide one object (its name as in scene.json). */
    setVisible(name, on) { objectNamed(name).on = !!on; updateVisibility(); syncTree(); },
    /** Cut on 'x', 'y', 'z', 'free' (or a direction [x, y, z]) at a fraction 0..1 of the extent
     *  along it; the part beyond the plane is taken away. 'none' (or null) removes the cut. */
    setCut,
    /** A PNG data URL of the view (with the axes and the scale bar unless {overlays: false}). */
    screenshot,
    // more, for scripts and tests
    setView, setOrtho,
    setClassVisible(name, on) { classNamed(name).on = !!on; updateVisibility(); syncTree(); },
    setOpacity(name, value) { classNamed(name).opacity = T.MathUtils.clamp(Number(value), 0, 1); updateVisibility(); syncTree(); },
    setCaps(on) { state.caps = !!on; updateVisibility(); syncCutControls(); },
    setEM(on) { showEM(on); },
    setOverlay(value) { state.overlay = T.MathUtils.clamp(Number(value), 0, 1); $('overlay-opacity').value = Math.round(state.overlay * 100); updateVisibility(); syncCutControls(); },
    setFlip(on) { state.cut.flip = !!on; applyCut(); },
    select(name) { select(name === null ? null : objectNamed(name)); },
    pick: (x, y) => pickAt(x, y),
    project,
    screenBox,
    state() {
      return {
        cut: { axis: state.cut.axis, fraction: state.cut.fraction, flip: state.cut.flip, normal: plane.normal.toArray(), constant: plane.constant },
        caps: state.caps, em: state.em, emAvailable: state.emAvailable, ortho: state.ortho,
        selected: state.selected ? state.selected.name : null,
        visible: state.objects.filter((o) => o.mesh.visible).map((o) => o.name),
        webgl2: renderer.getContext() instanceof WebGL2RenderingContext,
        renderer: gpu.name,
        software: gpu.software,
        antialias,
        background: BACKGROUND,
        scaleBar: scaleBar(),
        pixelsPerMicron: pixelsPerMicron(),
      };
    },
    meshStats: () => state.objects.map((o) => ({
      name: o.name, vertices: o.mesh.geometry.attributes.position.count, faces: o.mesh.geometry.index.count / 3,
      box: [o.box.min.toArray(), o.box.max.toArray()],
    })),
    timings,
    manifest,
  };

  /* Compile every shader the cut, the caps, the EM section and the opacity sliders will need
   * now, once the model is on screen, rather than at the user's first click (a software
   * renderer takes a good second for them). */
  function precompile() {
    const hidden = [];
    capGroup.traverse((o) => { if (o.isMesh && !o.visible) { hidden.push(o); o.visible = true; } });
    const saved = state.objects.map((o) => [o.material.transparent, o.material.depthWrite]);
    try {
      renderer.compile(scene, camera);
      for (const o of state.objects) { o.material.transparent = !o.material.transparent; o.material.needsUpdate = true; }
      renderer.compile(scene, camera);
    } finally {
      for (const o of hidden) o.visible = false;
      state.objects.forEach((o, k) => { [o.material.transparent, o.material.depthWrite] = saved[k]; o.material.needsUpdate = true; });
    }
  }

  // ---- start -----------------------------------------------------------------------------------

  async function start() {
    wirePanel();
    buildClasses();
    const packed = await embeddedBytes('vemcell-meshes');
    timings.decodedBase64Ms = performance.now();
    const bytes = await gunzip(packed);
    timings.inflatedMs = performance.now();
    buildObjects(bytes);
    timings.meshesMs = performance.now();
    buildPanel();
    setView('home');
    applyCut();
    render();
    $('status').textContent = '';
    $('em-note').textContent = manifest.em ? 'Loading the EM volume…' : (manifest.em_note || '');
    await new Promise((r) => requestAnimationFrame(() => r()));
    timings.firstFramePaintedMs = performance.now();
    try {
      await buildEM();
    } catch (err) {
      $('em-note').textContent = 'The EM section could not be loaded: ' + err.message;
      console.warn('vemcell viewer: EM section not loaded:', err);
    }
    precompile();
    if (!state.emAvailable && !$('em-note').textContent) $('em-note').textContent = manifest.em_note || 'No EM section in this page.';
    syncCutControls();
    updateVisibility();
    render();
    timings.readyMs = performance.now();
    resolveReady({ ...timings });
  }

  start().catch((err) => fail('The model could not be shown: ' + (err && err.message ? err.message : err)));
})();
