// Vemcell/Clipped: a lit, two-sided surface cut by one plane (_VemcellClipPlane, set by
// VemcellSlicer.cs). Built-in Render Pipeline. UNTESTED: never compiled here (no Unity on the
// project's machines); see docs/unity.md. For URP or HDRP, make a Shader Graph that does the
// same: Alpha Clip Threshold 0, Alpha = dot(Position (World), plane.xyz) + plane.w.
Shader "Vemcell/Clipped"
{
    Properties
    {
        _Color ("Colour", Color) = (1, 1, 1, 1)
        _Glossiness ("Smoothness", Range(0, 1)) = 0.4
        [HideInInspector] _SrcBlend ("__src", Float) = 1.0
        [HideInInspector] _DstBlend ("__dst", Float) = 0.0
        [HideInInspector] _ZWrite ("__zw", Float) = 1.0
    }
    SubShader
    {
        Tags { "RenderType" = "Opaque" }
        Cull Off
        Blend [_SrcBlend] [_DstBlend]
        ZWrite [_ZWrite]

        CGPROGRAM
        #pragma surface surf Standard fullforwardshadows addshadow keepalpha
        #pragma target 3.0

        float4 _VemcellClipPlane;
        fixed4 _Color;
        half _Glossiness;

        struct Input
        {
            float3 worldPos;
        };

        void surf (Input IN, inout SurfaceOutputStandard o)
        {
            clip(dot(IN.worldPos, _VemcellClipPlane.xyz) + _VemcellClipPlane.w);
            o.Albedo = _Color.rgb;
            o.Metallic = 0;
            o.Smoothness = _Glossiness;
            o.Alpha = _Color.a;
        }
        ENDCG
    }
    FallBack "Diffuse"
}
