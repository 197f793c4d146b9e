// VemcellSlicer: slice a vemcell model (scene.glb imported with glTFast) with one plane in Unity.
//
// UNTESTED: written against Unity 2022.3 LTS with the Built-in Render Pipeline and glTFast 6,
// but never compiled or run here (the project's machines have no Unity). Please report what
// breaks. See docs/unity.md.
//
// Put this component on the GameObject glTFast made from scene.glb (or on any parent of the
// vemcell objects). On Start it gives every renderer below it a material with the
// "Vemcell/Clipped" shader (VemcellClipped.shader, beside this file), keeping the object's colour
// and opacity from the imported material; then, every frame, it hands the plane to the shader.
// The plane is the `plane` Transform's position and its up (green) axis: the half the up axis
// points to is taken away. Without a `plane` it makes one at the model's centre.
//
// Keys (when `keys` is on): X, Y, Z put the plane square to that axis of the model, [ and ]
// move it (shift: ten times as far), V turns it round, C switches the cut off and on.

using System.Collections.Generic;
using UnityEngine;

public class VemcellSlicer : MonoBehaviour
{
    [Tooltip("The cutting plane: its position and its up (Y) axis. Made at the model's centre when empty.")]
    public Transform plane;

    [Tooltip("Cut the model (off: the whole model is shown).")]
    public bool cut = true;

    [Tooltip("X, Y, Z, [ ], V and C move and switch the cut.")]
    public bool keys = true;

    [Tooltip("How far [ and ] move the plane, as a fraction of the model's size.")]
    public float step = 0.01f;

    static readonly int PlaneId = Shader.PropertyToID("_VemcellClipPlane");
    static readonly int ColorId = Shader.PropertyToID("_Color");

    Bounds bounds;
    readonly List<Material> made = new List<Material>();

    void Start()
    {
        var shader = Shader.Find("Vemcell/Clipped");
        if (shader == null)
        {
            Debug.LogError("VemcellSlicer: the shader Vemcell/Clipped is missing (VemcellClipped.shader).");
            enabled = false;
            return;
        }
        var renderers = GetComponentsInChildren<Renderer>();
        bounds = new Bounds(transform.position, Vector3.zero);
        bool first = true;
        foreach (var r in renderers)
        {
            if (first) { bounds = r.bounds; first = false; } else bounds.Encapsulate(r.bounds);
            var materials = r.sharedMaterials;
            for (int i = 0; i < materials.Length; i++)
            {
                var m = new Material(shader) { name = materials[i] != null ? materials[i].name + " (clipped)" : "clipped" };
                var c = BaseColour(materials[i]);
                m.SetColor(ColorId, c);
                if (c.a < 0.999f)
                {
                    // translucent classes (the cytoplasm): blended, drawn after the opaque ones
                    m.SetFloat("_SrcBlend", (float)UnityEngine.Rendering.BlendMode.SrcAlpha);
                    m.SetFloat("_DstBlend", (float)UnityEngine.Rendering.BlendMode.OneMinusSrcAlpha);
                    m.SetFloat("_ZWrite", 0f);
                    m.renderQueue = (int)UnityEngine.Rendering.RenderQueue.Transparent;
                }
                made.Add(m);
                materials[i] = m;
            }
            r.sharedMaterials = materials;
        }
        if (plane == null)
        {
            plane = new GameObject("Vemcell cut plane").transform;
            plane.SetParent(transform, true);
            plane.position = bounds.center;
            plane.rotation = Quaternion.identity; // up = Unity's Y = vemcell's Z (the section axis)
        }
    }

    static Color BaseColour(Material m)
    {
        if (m == null) return Color.white;
        foreach (var name in new[] { "baseColorFactor", "_BaseColor", "_Color" })
            if (m.HasProperty(name)) return m.GetColor(name);
        return Color.white;
    }

    void Update()
    {
        if (plane == null) return;
        if (keys) HandleKeys();
        Vector3 n = -plane.up; // keep the side the up axis points away from
        float d = -Vector3.Dot(n, plane.position);
        // a plane far away when the cut is off, so nothing is clipped
        Vector4 p = cut ? new Vector4(n.x, n.y, n.z, d) : new Vector4(0f, 1f, 0f, 1e9f);
        Shader.SetGlobalVector(PlaneId, p);
    }

    void HandleKeys()
    {
        float size = bounds.size.magnitude * step * (Input.GetKey(KeyCode.LeftShift) || Input.GetKey(KeyCode.RightShift) ? 10f : 1f);
        if (Input.GetKeyDown(KeyCode.X)) Square(transform.right);
        if (Input.GetKeyDown(KeyCode.Y)) Square(transform.forward);
        if (Input.GetKeyDown(KeyCode.Z)) Square(transform.up);
        if (Input.GetKeyDown(KeyCode.LeftBracket)) plane.position -= plane.up * size;
        if (Input.GetKeyDown(KeyCode.RightBracket)) plane.position += plane.up * size;
        if (Input.GetKeyDown(KeyCode.V)) plane.rotation = Quaternion.FromToRotation(plane.up, -plane.up) * plane.rotation;
        if (Input.GetKeyDown(KeyCode.C)) cut = !cut;
    }

    void Square(Vector3 axis)
    {
        plane.rotation = Quaternion.FromToRotation(Vector3.up, axis);
        cut = true;
    }

    void OnDestroy()
    {
        foreach (var m in made) Destroy(m);
        Shader.SetGlobalVector(PlaneId, new Vector4(0f, 1f, 0f, 1e9f));
    }
}
