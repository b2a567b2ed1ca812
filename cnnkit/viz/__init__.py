"""Pictures of what a network computes: filters, feature maps, curves, confusion, receptive fields, im2col, the
step-by-step convolution demo, and class evidence (CAM, Grad-CAM, gradient saliency, occlusion).

Every ``plot_*`` function draws with matplotlib's object API (no pyplot, so no global backend and no
windows), writes PNG, SVG or PDF by the file's extension and returns the path.
"""
from .confusion import plot_confusion_matrix
from .conv_demo import conv_demo
from .conv_demo_files import write_conv_demo
from .curves import plot_curves, read_metrics
from .evidence import Evidence, class_activation_map, grad_cam, normalize_map, occlusion, saliency, upsample_bilinear
from .evidence_plots import heatmap_rgba, overlay_heatmap, plot_evidence
from .features import feature_maps, plot_feature_maps
from .filters import plot_filters
from .geometry import AxisGeometry, LayerGeometry, geometry_from_records, layer_geometry
from .im2col import im2col_matrix, plot_im2col
from .images import ImageInputError, Prepared, prepare_image
from .receptive_field import plot_receptive_field, unit_receptive_field
from .taps import LayerTap, evaluating, spatial_layers

__all__ = ["plot_filters", "plot_feature_maps", "plot_curves", "plot_confusion_matrix", "plot_receptive_field",
           "plot_im2col", "feature_maps", "unit_receptive_field", "layer_geometry", "geometry_from_records",
           "AxisGeometry", "LayerGeometry", "im2col_matrix", "prepare_image", "Prepared", "ImageInputError",
           "read_metrics", "LayerTap", "spatial_layers", "evaluating", "conv_demo", "write_conv_demo", "Evidence",
           "class_activation_map", "grad_cam", "saliency", "occlusion", "normalize_map", "upsample_bilinear",
           "heatmap_rgba", "overlay_heatmap", "plot_evidence"]
