# Lets the tests import video_tag from a checkout without installing it.
