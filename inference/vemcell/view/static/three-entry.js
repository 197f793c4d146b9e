// The part of three.js that viewer.js uses, bundled into one classic script (global THREE) so
// the page runs from file:// with no module loading. Rebuild: see README.md in this folder.
export {
  AlwaysStencilFunc, BackSide, Box3, Box3Helper, BufferAttribute, BufferGeometry, Color,
  Data3DTexture, DecrementWrapStencilOp, DirectionalLight, DoubleSide, FrontSide, Group,
  HemisphereLight, IncrementWrapStencilOp, LinearFilter, MathUtils, Mesh, MeshBasicMaterial,
  MeshStandardMaterial, NotEqualStencilFunc, Object3D, OrthographicCamera, PerspectiveCamera,
  Plane, PlaneGeometry, Quaternion, Raycaster, RedFormat, ReplaceStencilOp, REVISION,
  SRGBColorSpace, Scene, ShaderMaterial, UnsignedByteType, Vector2, Vector3, WebGLRenderer,
} from 'three';
export { OrbitControls } from 'three/examples/jsm/controls/OrbitControls.js';
